//! The web page of `murmur serve` in a real browser: headless Chromium driven by Selenium
//! (tests/browser/page.py; `scripts/setup --tests` installs the Debian `chromium` and
//! `chromium-driver` packages and the Python package). It chats, sees the streamed replies,
//! sees the analyzer's note delivered in the live feed, and saves a screenshot in the test's
//! folder. With `MURMUR_SCREENSHOT=PATH` the screenshot is also copied to PATH (the README's
//! picture is made this way).

use murmur_e2e::*;
use serde_json::json;

#[test]
fn the_page_streams_replies_and_shows_injections_arriving() {
    let t = setup("browser");
    t.plugins(&["configurable"]);
    t.config(&format!(
        "{MODEL}[[analyzer]]\nname = \"fact-check\"\nplugin = \"configurable\"\n\
         hooks = [\"turn_start\"]\n[analyzer.config]\nrole = \"user\"\n\
         text = \"Checked turn {{turn}}: the Østfold Line reached Halden in 1879.\"\n"
    ));
    t.model_script(&[
        json!({"text": "The Østfold Line runs from Oslo to Halden and on to Sweden."}),
        json!({"text": "It reached Halden in 1879."}),
    ]);
    let server = t.serve(&[]);
    let screenshot = t.join("page.png");

    // Fails with the browser's page and console when it does not see what it waits for.
    let seen = python_client(
        "browser/page.py",
        ("browser-client", "selenium"),
        &[server.url("").as_ref(), screenshot.as_os_str()],
        || {
            format!(
                "(page.py needs the Debian packages chromium and chromium-driver: scripts/setup --tests)\n{}",
                server.stderr()
            )
        },
    );

    assert_eq!(seen["title"], "Murmur");
    assert_eq!(
        seen["reply1"], "The Østfold Line runs from Oslo to Halden and on to Sweden.",
        "{seen:#}"
    );
    assert_eq!(seen["reply2"], "It reached Halden in 1879.", "{seen:#}");
    assert_eq!(
        seen["user_messages"],
        json!(["Which line runs from Oslo to Halden?", "When did it open?"])
    );
    let injection = &seen["injection"];
    assert_eq!(injection["analyzer"], "fact-check", "{seen:#}");
    assert_eq!(
        injection["text"],
        "Checked turn 1: the Østfold Line reached Halden in 1879."
    );
    assert_eq!(injection["status"], "delivered · turn boundary · turn 2");
    assert!(
        seen["runs"]
            .as_array()
            .is_some_and(|r| r.iter().any(|a| a == "fact-check")),
        "{seen:#}"
    );
    // The chat notes the delivery in turn 2, never the injected text itself.
    let notes = seen["notes"].as_array().expect("notes");
    assert!(
        notes.iter().any(|n| n
            .as_str()
            .is_some_and(|n| n.starts_with("↳ fact-check: context lane"))),
        "{seen:#}"
    );
    let png = std::fs::read(&screenshot).expect("the screenshot");
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );
    if let Some(to) = std::env::var_os("MURMUR_SCREENSHOT") {
        std::fs::copy(&screenshot, &to).expect("copy the screenshot to MURMUR_SCREENSHOT");
    }
}
