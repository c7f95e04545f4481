//! `murmur new-analyzer`: a standalone analyzer crate made from the template in
//! `examples/minimal-analyzer/`, renamed, with its dependency on `murmur-plugin-api` by path
//! or by version, its tests (which use the plugin API's testing kit) and a README with the
//! commands to build, install and try it.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};

/// The template, embedded in the binary so that the command works from anywhere.
const TEMPLATE_LIB: &str = include_str!("../../examples/minimal-analyzer/src/lib.rs");
const TEMPLATE_MANIFEST: &str = include_str!("../../examples/minimal-analyzer/Cargo.toml");

/// The template's names, replaced by the new crate's.
const TEMPLATE_CRATE: &str = "minimal-analyzer";
const TEMPLATE_ANALYZER: &str = "unanswered-question";
const TEMPLATE_TYPE: &str = "UnansweredQuestion";
const TEMPLATE_API_PATH: &str = "{ path = \"../../plugin-api\" }";

/// What `murmur new-analyzer` was asked for.
#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// The analyzer's name: lowercase letters, digits and hyphens, starting with a letter. It
    /// names the crate, the plugin, the analyzer (`plugin = "NAME"`) and its supersede key.
    pub name: String,
    /// Where to create the crate (default: `./NAME`). It must not exist or be empty.
    #[arg(long, value_name = "DIR")]
    pub path: Option<PathBuf>,
    /// Depend on `murmur-plugin-api` in this folder (a Murmur checkout's `plugin-api`).
    /// Default: the one of the source tree this `murmur` was built from, when it exists.
    #[arg(long, value_name = "DIR", conflicts_with = "api_version")]
    pub api_path: Option<PathBuf>,
    /// Depend on this version of `murmur-plugin-api` from the registry instead.
    #[arg(long, value_name = "VERSION")]
    pub api_version: Option<String>,
}

/// How the new crate depends on the plugin API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Api {
    /// A local folder.
    Path(PathBuf),
    /// A registry version.
    Version(String),
}

impl Api {
    /// The dependency's value in `Cargo.toml`, with `features` added when given.
    fn spec(&self, features: &str) -> String {
        let features = if features.is_empty() {
            String::new()
        } else {
            format!(", features = [\"{features}\"]")
        };
        match self {
            Api::Path(p) => format!(
                "{{ path = {}{features} }}",
                toml_string(&p.to_string_lossy())
            ),
            Api::Version(v) => format!("{{ version = {}{features} }}", toml_string(v)),
        }
    }
}

/// A TOML basic string.
fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Checks a name: lowercase ASCII letters, digits and single hyphens, starting with a
/// letter, at most 64 characters.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && !name.contains("--")
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a usable analyzer name: use lowercase letters, digits and single hyphens, starting with a letter (e.g. `shouting` or `tone-check`)"
        ))
    }
}

/// `tone-check` → `ToneCheck`.
fn type_name(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut chars = part.chars();
            match chars.next() {
                Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
                None => String::new(),
            }
        })
        .collect()
}

/// The files of the new crate, by path relative to its folder.
pub fn files(name: &str, api: &Api) -> Vec<(&'static str, String)> {
    let snake = name.replace('-', "_");
    let ty = type_name(name);
    let rename = |text: &str| {
        text.replace(TEMPLATE_TYPE, &ty)
            .replace(TEMPLATE_ANALYZER, name)
            .replace(TEMPLATE_CRATE, name)
            .replace("minimal_analyzer", &snake)
    };

    // The manifest: the template's, minus its note about copying it, with the API chosen
    // and a workspace of its own (so it builds wherever it is created).
    let manifest_body = TEMPLATE_MANIFEST
        .lines()
        .skip_while(|l| l.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    let manifest_body = manifest_body
        .replace(
            "description = \"Template: a small Murmur analyzer that notices unanswered questions.\"",
            "description = \"A Murmur analyzer plugin.\"",
        )
        .replace(
            &format!(
                "murmur-plugin-api = {}",
                TEMPLATE_API_PATH.replace(" }", ", features = [\"testing\"] }")
            ),
            &format!("murmur-plugin-api = {}", api.spec("testing")),
        )
        .replace(
            &format!("murmur-plugin-api = {TEMPLATE_API_PATH}"),
            &format!("murmur-plugin-api = {}", api.spec("")),
        );
    let manifest = format!(
        "# A Murmur analyzer plugin, made by `murmur new-analyzer {name}` from Murmur's template.\n{}\n\n# A workspace of its own: the crate builds wherever it lives.\n[workspace]\n",
        rename(&manifest_body).trim_end()
    );

    // The code: the template's, under a header for this crate.
    let body_start = TEMPLATE_LIB.find("\nuse ").map_or(0, |i| i + 1);
    let lib = format!(
        "//! # {name}: a Murmur analyzer\n//!\n//! Made by `murmur new-analyzer` from Murmur's template: it notices when a reply leaves\n//! the user's question unanswered and reminds the model in the next turn's system prompt.\n//! Change [`check`] and [`{ty}::review`] to make it yours; README.md has the commands to\n//! build, install and try it.\n\n{}",
        rename(&TEMPLATE_LIB[body_start..])
    );

    let readme = format!(
        r#"# {name}

A Murmur analyzer plugin made by `murmur new-analyzer {name}`. As
generated, it runs on `turn_complete` and, when a reply leaves the user's question
unanswered, puts a reminder into the next turn's system prompt (the instructions lane,
supersede key `{name}`). The logic is in `src/lib.rs`: `check` decides, `{ty}::review`
makes the note, `analyze` connects them to the host.

## Build, install, try

```sh
cargo test                       # the unit tests and the plugin API's conformance checks
cargo build --release            # target/release/lib{snake}.so
cp target/release/lib{snake}.so /path/to/your/plugins/   # the plugins_dir of your config
```

Then enable it in your Murmur config and run a conversation:

```toml
[[analyzer]]
name = "{name}"
# [analyzer.config]
# min_word_len = 4
# note = "Answer the question about {{words}} first."
```

```sh
murmur plugins check /path/to/your/plugins/lib{snake}.so   # loads it as the host does
murmur run --config murmur.toml --script conversation.txt --record-model-input inputs.jsonl
```

Its notes show in the recorded model inputs (`inputs.jsonl`), in the system prompt of the
turn after the one they are about.
"#
    );

    vec![
        ("Cargo.toml", manifest),
        ("src/lib.rs", lib),
        ("README.md", readme),
        (".gitignore", "/target\n".to_string()),
    ]
}

/// The plugin API of the source tree this binary was built from, if it is still there.
fn source_tree_api() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("plugin-api");
    dir.join("Cargo.toml")
        .is_file()
        .then(|| dir.canonicalize().ok())
        .flatten()
}

/// Runs the command: writes the crate and prints what to do next.
pub fn run(options: &Options) -> anyhow::Result<()> {
    check_name(&options.name).map_err(anyhow::Error::msg)?;
    let api = match (&options.api_version, &options.api_path) {
        (Some(v), _) => Api::Version(v.clone()),
        (None, Some(p)) => {
            if !p.join("Cargo.toml").is_file() {
                bail!(
                    "{} has no Cargo.toml: --api-path takes the plugin-api folder of a Murmur checkout",
                    p.display()
                );
            }
            Api::Path(
                p.canonicalize()
                    .with_context(|| format!("cannot resolve {}", p.display()))?,
            )
        }
        (None, None) => Api::Path(source_tree_api().context(
            "this murmur was built from a source tree that is gone; pass --api-path DIR (the plugin-api folder of a Murmur checkout) or --api-version VERSION",
        )?),
    };
    let dir = options
        .path
        .clone()
        .unwrap_or_else(|| PathBuf::from(&options.name));
    if dir.exists() {
        let empty = std::fs::read_dir(&dir)
            .with_context(|| format!("cannot read {}", dir.display()))?
            .next()
            .is_none();
        if !empty {
            bail!(
                "{} already exists and is not empty; choose another --path",
                dir.display()
            );
        }
    }
    let files = files(&options.name, &api);
    // Written into a temporary folder next to the target and renamed at the end, so a
    // failure leaves nothing half-written behind.
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent)
        .with_context(|| format!("cannot create {}", parent.display()))?;
    let staging = tempfile::Builder::new()
        .prefix(".murmur-new-analyzer-")
        .tempdir_in(&parent)
        .with_context(|| format!("cannot create a folder in {}", parent.display()))?;
    for (rel, text) in &files {
        let path = staging.path().join(rel);
        if let Some(p) = path.parent() {
            std::fs::create_dir_all(p)?;
        }
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    if dir.exists() {
        std::fs::remove_dir(&dir).with_context(|| format!("cannot replace {}", dir.display()))?;
    }
    let staged = staging.keep();
    std::fs::rename(&staged, &dir)
        .with_context(|| format!("cannot move the new crate to {}", dir.display()))?;
    let snake = options.name.replace('-', "_");
    println!(
        "created {} ({})",
        dir.display(),
        files.iter().map(|(f, _)| *f).collect::<Vec<_>>().join(", ")
    );
    match &api {
        Api::Path(p) => println!("murmur-plugin-api from {}", p.display()),
        Api::Version(v) => println!("murmur-plugin-api {v} from the registry"),
    }
    println!();
    println!("  cd {}", dir.display());
    println!("  cargo test");
    println!("  cargo build --release");
    println!("  cp target/release/lib{snake}.so YOUR_PLUGINS_DIR/");
    println!();
    println!(
        "then add `[[analyzer]] name = \"{}\"` to your config (README.md shows the rest)",
        options.name
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_and_turned_into_type_names() {
        for good in ["shouting", "tone-check", "a1"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "Shouting",
            "1st",
            "tone--check",
            "tone-",
            "tone_check",
            "töne",
        ] {
            let e = check_name(bad).expect_err(bad);
            assert!(e.contains("lowercase letters"), "{e}");
        }
        assert_eq!(type_name("tone-check"), "ToneCheck");
        assert_eq!(type_name("shouting"), "Shouting");
    }

    #[test]
    fn the_files_carry_the_new_names_and_the_chosen_api_and_nothing_of_the_template() {
        let files = files(
            "tone-check",
            &Api::Path(PathBuf::from("/src/murmur/plugin-api")),
        );
        let get = |name: &str| {
            files
                .iter()
                .find(|(f, _)| *f == name)
                .map(|(_, t)| t.as_str())
                .unwrap_or_else(|| panic!("no {name}"))
        };
        let manifest = get("Cargo.toml");
        assert!(manifest.contains("name = \"tone-check\""), "{manifest}");
        assert!(
            manifest.contains("murmur-plugin-api = { path = \"/src/murmur/plugin-api\" }"),
            "{manifest}"
        );
        assert!(manifest.contains(
            "murmur-plugin-api = { path = \"/src/murmur/plugin-api\", features = [\"testing\"] }"
        ), "{manifest}");
        assert!(
            manifest.contains("crate-type = [\"cdylib\", \"rlib\"]"),
            "{manifest}"
        );
        assert!(manifest.trim_end().ends_with("[workspace]"), "{manifest}");
        let parsed: toml::Value = toml::from_str(manifest).expect("the manifest is TOML");
        assert_eq!(parsed["package"]["name"].as_str(), Some("tone-check"));
        let lib = get("src/lib.rs");
        assert!(lib.contains("pub struct ToneCheck"), "{lib}");
        assert!(
            lib.contains("const NAME: &'static str = \"tone-check\";"),
            "{lib}"
        );
        assert!(lib.contains("name: \"tone-check\""), "{lib}");
        for file in ["Cargo.toml", "src/lib.rs", "README.md"] {
            let text = get(file);
            for old in [
                TEMPLATE_CRATE,
                TEMPLATE_ANALYZER,
                TEMPLATE_TYPE,
                "../../plugin-api",
            ] {
                assert!(!text.contains(old), "{file} still says {old}");
            }
        }
        assert!(get("README.md").contains("cp target/release/libtone_check.so"));
        let by_version = files_manifest("x", &Api::Version("0.1.0".into()));
        assert!(by_version.contains("murmur-plugin-api = { version = \"0.1.0\" }"));
    }

    fn files_manifest(name: &str, api: &Api) -> String {
        files(name, api)
            .into_iter()
            .find(|(f, _)| *f == "Cargo.toml")
            .map(|(_, t)| t)
            .unwrap_or_default()
    }
}
