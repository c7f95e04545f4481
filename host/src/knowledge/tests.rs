use std::path::Path;

use super::*;

fn write(dir: &Path, name: &str, text: &str) {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("mkdir");
    }
    std::fs::write(path, text).expect("write");
}

struct Fixture {
    _tmp: tempfile::TempDir,
    settings: KnowledgeSettings,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().expect("tempdir");
    let kb = tmp.path().join("kb");
    write(
        &kb,
        "rail/fares.md",
        "# Northwind Rail\n\n## Fares\n\nA single ticket costs VDC 4.50.\n\n### Child fares\n\nChildren under 12 travel for VDC 2.00.\n",
    );
    write(
        &kb,
        "rail/lines.md",
        "# Lines\n\n## Halden line\n\nThe Halden line opened on March 5, 1987 and is 42 km long.\n",
    );
    write(
        &kb,
        "notes.txt",
        "Ferries leave Port Avalon every 45 minutes.\n",
    );
    write(
        &kb,
        ".hidden/secret.md",
        "# Hidden\n\nnever indexed halden\n",
    );
    write(&kb, "image.png", "not text");
    let settings = KnowledgeSettings::new(kb, tmp.path().join("state/index"));
    Fixture {
        _tmp: tmp,
        settings,
    }
}

fn open(s: &KnowledgeSettings) -> (KnowledgeBase, BuildReport) {
    KnowledgeBase::open(s, false, &|_| {}).expect("open")
}

#[test]
fn builds_on_first_use_and_finds_passages_with_their_citation() {
    let f = fixture();
    let lines = std::cell::RefCell::new(Vec::new());
    let (kb, report) = KnowledgeBase::open(&f.settings, false, &|l| {
        lines.borrow_mut().push(l.to_string())
    })
    .expect("open");
    assert!(report.rebuilt);
    assert_eq!(report.reason, "no index yet");
    assert_eq!((report.files, report.passages), (3, 4));
    assert_eq!(kb.passages(), 4);
    let lines = lines.into_inner();
    assert!(lines[0].starts_with("indexing "), "{lines:?}");
    assert!(
        lines
            .last()
            .is_some_and(|l| l.contains("3 files, 4 passages")),
        "{lines:?}"
    );

    let hits = kb
        .search("When did the Halden line open?", 3)
        .expect("search");
    assert_eq!(hits[0].source, "rail/lines.md");
    assert_eq!(hits[0].heading, "Lines > Halden line");
    assert_eq!(hits[0].citation(), "rail/lines.md > Lines > Halden line");
    assert!(hits[0].text.contains("March 5, 1987"));
    assert_eq!(hits[0].id, "rail/lines.md#1");
    // Hidden folders are skipped.
    assert!(hits.iter().all(|h| !h.source.contains("hidden")));

    // Stemming: "fare" finds the "Fares" section; the heading counts as text.
    let hits = kb.search("child fare", 2).expect("search");
    assert_eq!(hits[0].heading, "Northwind Rail > Fares > Child fares");
    assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));
    // Plain text files have passages without a heading.
    let hits = kb.search("ferries", 1).expect("search");
    assert_eq!(
        (hits[0].source.as_str(), hits[0].heading.as_str()),
        ("notes.txt", "")
    );
}

#[test]
fn any_text_is_a_valid_query() {
    let f = fixture();
    let (kb, _) = open(&f.settings);
    assert!(kb.search("the of and", 3).expect("stop words").is_empty());
    assert!(kb.search("", 3).expect("empty").is_empty());
    assert!(kb.search("???", 3).expect("punctuation").is_empty());
    assert!(kb.search("halden", 0).expect("k = 0").is_empty());
    let hits = kb
        .search("title:halden AND (line OR \"x", 5)
        .expect("syntax is not interpreted");
    assert_eq!(hits[0].source, "rail/lines.md");
}

#[test]
fn an_unchanged_folder_is_not_rebuilt_and_a_touched_file_only_updates_the_manifest() {
    let f = fixture();
    let (_, first) = open(&f.settings);
    assert!(first.rebuilt);
    let (_, second) = open(&f.settings);
    assert!(!second.rebuilt);
    assert_eq!(second.reason, "up to date");
    assert_eq!(second.passages, 4);

    // Same content, new modification time: a hash, no rebuild.
    let path = f.settings.path.join("notes.txt");
    let text = std::fs::read(&path).expect("read");
    let file = std::fs::File::options()
        .write(true)
        .open(&path)
        .expect("open");
    file.set_modified(std::time::SystemTime::now() + Duration::from_secs(5))
        .expect("touch");
    drop(file);
    std::fs::write(&path, &text).expect("same bytes");
    let (_, third) = open(&f.settings);
    assert!(!third.rebuilt, "{third:?}");
}

#[test]
fn changed_added_and_removed_files_rebuild_the_index() {
    let f = fixture();
    open(&f.settings);
    write(
        &f.settings.path,
        "rail/lines.md",
        "# Lines\n\n## Halden line\n\nThe Halden line opened in 1990.\n",
    );
    let (kb, r) = open(&f.settings);
    assert!(r.rebuilt);
    assert_eq!(r.reason, "rail/lines.md changed");
    let hits = kb.search("Halden", 1).expect("search");
    assert!(hits[0].text.contains("1990"), "the new text is searched");

    write(&f.settings.path, "more.md", "# More\n\nAbout trams.\n");
    let (kb, r) = open(&f.settings);
    assert_eq!(
        (r.rebuilt, r.reason.as_str()),
        (true, "files were added or removed")
    );
    assert_eq!(kb.search("trams", 1).expect("search")[0].source, "more.md");

    std::fs::remove_file(f.settings.path.join("more.md")).expect("rm");
    let (kb, r) = open(&f.settings);
    assert!(r.rebuilt);
    assert!(kb.search("trams", 1).expect("search").is_empty());
    // Forced.
    let (_, r) = KnowledgeBase::open(&f.settings, true, &|_| {}).expect("open");
    assert_eq!((r.rebuilt, r.reason.as_str()), (true, "rebuild requested"));
    // No temporary folders are left beside the index.
    let parent = f.settings.index.parent().expect("parent");
    let names: Vec<String> = std::fs::read_dir(parent)
        .expect("ls")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["index".to_string()]);
}

#[test]
fn an_index_that_does_not_open_is_rebuilt() {
    let f = fixture();
    open(&f.settings);
    // Damage the index but keep its manifest: the manifest alone says "up to date".
    for entry in std::fs::read_dir(&f.settings.index).expect("ls") {
        let path = entry.expect("entry").path();
        if path.file_name().is_some_and(|n| n == "meta.json") {
            std::fs::write(&path, "{").expect("damage");
        }
    }
    let (kb, r) = open(&f.settings);
    assert!(r.rebuilt);
    assert!(
        r.reason.starts_with("the index does not open"),
        "{}",
        r.reason
    );
    assert_eq!(
        kb.search("Halden", 1).expect("search")[0].source,
        "rail/lines.md"
    );
}

#[test]
fn a_file_that_is_not_utf8_is_skipped_and_named() {
    let f = fixture();
    std::fs::write(f.settings.path.join("bad.md"), [0xff, 0xfe, 0x00, 0x41]).expect("write");
    let lines = std::cell::RefCell::new(Vec::new());
    let (kb, r) = KnowledgeBase::open(&f.settings, false, &|l| {
        lines.borrow_mut().push(l.to_string())
    })
    .expect("open");
    assert_eq!(r.skipped, vec!["bad.md: not UTF-8 text".to_string()]);
    assert_eq!(kb.passages(), 4);
    assert!(lines
        .borrow()
        .iter()
        .any(|l| l == "skipped bad.md: not UTF-8 text"));
}

#[test]
fn a_missing_folder_is_an_error_that_names_it() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let s = KnowledgeSettings::new(tmp.path().join("nope"), tmp.path().join("index"));
    let e = KnowledgeBase::open(&s, false, &|_| {}).expect_err("missing");
    let text = e.to_string();
    assert!(text.contains("nope"), "{text}");
    assert!(!tmp.path().join("index").exists());
}

#[tokio::test]
async fn the_search_knowledge_tool_returns_cited_passages_and_checks_its_arguments() {
    let f = fixture();
    let (kb, _) = open(&f.settings);
    let entry = tool::entry(Arc::new(kb), 2, Duration::from_secs(5));
    assert_eq!(entry.spec.name, "search_knowledge");
    let out = entry
        .backend
        .call(
            serde_json::json!({"query": "Halden line opening"}),
            "s".into(),
        )
        .await
        .expect("call");
    assert!(
        out.starts_with("[1] rail/lines.md > Lines > Halden line\nThe Halden line opened"),
        "{out}"
    );
    let none = entry
        .backend
        .call(serde_json::json!({"query": "zeppelin"}), "s".into())
        .await
        .expect("call");
    assert_eq!(none, "No passage in the knowledge base matches this query.");
    let e = entry
        .backend
        .call(serde_json::json!({"q": "x"}), "s".into())
        .await
        .expect_err("no query");
    assert!(e.contains("`query`"), "{e}");
    let e = entry
        .backend
        .call(serde_json::json!({"query": "x", "k": 50}), "s".into())
        .await
        .expect_err("k too big");
    assert!(e.contains("`k`"), "{e}");
}

use std::sync::Arc;

fn embedding_model() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/all-MiniLM-L6-v2.gguf");
    assert!(
        p.is_file(),
        "{} is missing; run scripts/fetch-model",
        p.display()
    );
    p
}

fn hybrid(f: &Fixture) -> KnowledgeSettings {
    KnowledgeSettings {
        embedding_model: Some(embedding_model()),
        threads: 2,
        ..f.settings.clone()
    }
}

#[test]
fn with_an_embedding_model_a_question_in_other_words_finds_its_passage() {
    let f = fixture();
    let s = hybrid(&f);
    let lines = std::cell::RefCell::new(Vec::new());
    let (kb, report) =
        KnowledgeBase::open(&s, false, &|l| lines.borrow_mut().push(l.to_string())).expect("open");
    assert!(report.rebuilt);
    let lines = lines.into_inner();
    assert!(
        lines.iter().any(|l| l.starts_with("embedded 4 passages")),
        "{lines:?}"
    );
    assert!(s.index.join(vectors::FILE).is_file());
    // "kids" and "pay" are not in the passage about child fares ("Children ... travel for"):
    // it is found by meaning.
    let hits = kb.search("How much do kids pay?", 2).expect("search");
    assert_eq!(
        hits[0].citation(),
        "rail/fares.md > Northwind Rail > Fares > Child fares"
    );
    let similarity = hits[0].similarity.expect("hybrid hits carry a similarity");
    assert!(similarity > 0.3 && similarity <= 1.0, "{similarity}");
    assert!(hits[0].score >= hits[1].score);
    // Found by meaning alone: not one word in common.
    let hits = kb.search("boat departures", 1).expect("search");
    assert_eq!(hits[0].source, "notes.txt");
}

#[test]
fn adding_or_changing_the_embedding_model_rebuilds_and_a_lexical_index_has_no_similarity() {
    let f = fixture();
    let (kb, _) = open(&f.settings);
    let hits = kb.search("halden", 1).expect("search");
    assert_eq!(hits[0].similarity, None);
    let s = hybrid(&f);
    let (kb, r) = open(&s);
    assert!(r.rebuilt, "{}", r.reason);
    assert_eq!(r.reason, "the embedding model changed");
    assert!(kb.search("halden", 1).expect("search")[0]
        .similarity
        .is_some());
    let (_, r) = open(&s);
    assert!(!r.rebuilt, "{}", r.reason);
    // Vectors that went missing: the index does not open with the model, so it is rebuilt.
    std::fs::remove_file(s.index.join(vectors::FILE)).expect("rm");
    let (kb, r) = open(&s);
    assert!(r.rebuilt);
    assert!(r.reason.contains("does not open"), "{}", r.reason);
    assert!(kb.search("halden", 1).expect("search")[0]
        .similarity
        .is_some());
    // Back to lexical.
    let (_, r) = open(&f.settings);
    assert!(r.rebuilt);
}

#[test]
fn a_missing_embedding_model_is_an_error_that_names_it() {
    let f = fixture();
    let s = KnowledgeSettings {
        embedding_model: Some(PathBuf::from("/nowhere/embed.gguf")),
        ..f.settings.clone()
    };
    let e = KnowledgeBase::open(&s, false, &|_| {}).expect_err("missing model");
    let msg = e.to_string();
    assert!(msg.contains("/nowhere/embed.gguf"), "{msg}");
    assert!(!s.index.exists(), "nothing written");
}
