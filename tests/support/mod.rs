//! Support for the end-to-end tests (ripgrep style): build the workspace once per test
//! process, lay out a temporary folder with real fixture plugin libraries, a config file, a
//! scripted model and a conversation, run the real `murmur` binary, and read back what it
//! printed (`stdout`, `stderr`, exit code) and recorded (`--record-model-input`, `--events`).
//!
//! ```no_run
//! let t = murmur_e2e::setup("example");
//! t.plugins(&["configurable"]);
//! t.config(&format!("{}[[analyzer]]\nname = \"notes\"\nplugin = \"configurable\"\n", murmur_e2e::MODEL));
//! t.model_script(&[serde_json::json!({"text": "hi"})]);
//! t.conversation("hello\n");
//! let run = t.run();
//! assert_eq!(run.code, Some(0), "{}", run.dump());
//! ```

use std::cell::Cell;
use std::ffi::OsStr;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod openai_server;
pub mod postgres;

/// A `murmur` process that runs longer than this is killed and its test fails. It catches
/// hangs, not slowness: runs on the local model share two cores with other tests.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(300);

/// The `[model]` table every test config uses: the scripted provider reading
/// [`MODEL_SCRIPT`] next to the config file. Top-level keys must come before it.
pub const MODEL: &str = "[model]\nprovider = \"scripted\"\nscript = \"replies.jsonl\"\n\n";

/// File name of the config written by [`TestDir::config`].
pub const CONFIG: &str = "murmur.toml";
/// File name of the model script written by [`TestDir::model_script`].
pub const MODEL_SCRIPT: &str = "replies.jsonl";
/// File name of the conversation written by [`TestDir::conversation`].
pub const CONVERSATION: &str = "conversation.txt";
/// File name of the model-input record of [`TestDir::run`].
pub const INPUTS: &str = "model-inputs.jsonl";
/// File name of the event log of [`TestDir::run`].
pub const EVENTS: &str = "events.jsonl";

/// The workspace root: the parent of this package's folder.
pub fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests package lives inside the workspace folder")
}

/// The default model file (`MURMUR_MODEL` overrides it), as `scripts/fetch-model` leaves it.
pub fn model_path() -> PathBuf {
    let path = std::env::var_os("MURMUR_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            workspace_root()
                .join("models")
                .join("SmolLM2-135M-Instruct.Q4_1.gguf")
        });
    assert!(
        path.is_file(),
        "{} is missing: run scripts/setup (the README's test command does)",
        path.display()
    );
    path
}

/// `<target>/debug`, where `<target>` is `CARGO_TARGET_DIR` (relative to the workspace root
/// when relative) or `<workspace>/target`.
pub fn target_dir() -> PathBuf {
    let root = workspace_root();
    let base = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                root.join(dir)
            }
        }
        _ => root.join("target"),
    };
    base.join("debug")
}

fn binary_name() -> String {
    format!("murmur{}", std::env::consts::EXE_SUFFIX)
}

/// Builds the workspace (the binary and every fixture library) once per test process and
/// returns the folder holding the artifacts.
pub fn built() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let out = Command::new(&cargo)
            // The profile of `cargo test` itself, so the build shares its artifacts (the
            // embedded llama.cpp above all) instead of building everything a second time.
            .args(["build", "--workspace", "--profile", "test"])
            .current_dir(workspace_root())
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {cargo:?} build --workspace: {e}"));
        assert!(
            out.status.success(),
            "`cargo build --workspace --profile test` failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let dir = target_dir();
        let bin = dir.join(binary_name());
        assert!(
            bin.is_file(),
            "the build succeeded but {} does not exist (unusual target-dir setup?)",
            bin.display()
        );
        dir
    })
}

/// The built `murmur` binary.
pub fn murmur_binary() -> PathBuf {
    built().join(binary_name())
}

/// The built library of a fixture under `plugins/testing/`: `"wrong-abi"` →
/// `libmurmur_testing_wrong_abi.so`.
pub fn fixture_library(name: &str) -> PathBuf {
    built().join(format!(
        "{}murmur_testing_{}{}",
        std::env::consts::DLL_PREFIX,
        name.replace('-', "_"),
        std::env::consts::DLL_SUFFIX
    ))
}

/// The built library of a workspace plugin by its crate's library name: `"murmur_rag"` →
/// `libmurmur_rag.so`.
pub fn plugin_library(lib: &str) -> PathBuf {
    built().join(format!(
        "{}{lib}{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    ))
}

/// File name a fixture gets inside a test's `plugins/` folder (the host loads `*.so`).
pub fn fixture_file_name(name: &str) -> String {
    format!("libmurmur_testing_{}.so", name.replace('-', "_"))
}

/// What a `murmur` process did.
#[derive(Debug, Clone)]
pub struct Output {
    /// Its arguments, for messages.
    pub args: Vec<String>,
    /// Everything it printed on stdout.
    pub stdout: String,
    /// Everything it printed on stderr.
    pub stderr: String,
    /// Its exit code (`None` when a signal ended it).
    pub code: Option<i32>,
    /// Wall-clock time from spawn to exit.
    pub elapsed: Duration,
}

impl Output {
    /// The arguments and both streams, for assertion messages.
    pub fn dump(&self) -> String {
        format!(
            "murmur {}\nexit code: {:?}, after {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.args.join(" "),
            self.code,
            self.elapsed,
            self.stdout,
            self.stderr
        )
    }
}

/// What `murmur run` did, with its model-input record and event log parsed.
#[derive(Debug, Clone)]
pub struct Run {
    /// The process.
    pub output: Output,
    /// Every recorded model input, in order (S40).
    pub inputs: Vec<Value>,
    /// Every event, in order.
    pub events: Vec<Value>,
}

impl Run {
    /// Exit code.
    pub fn code(&self) -> Option<i32> {
        self.output.code
    }

    /// Stdout: the visible transcript.
    pub fn stdout(&self) -> &str {
        &self.output.stdout
    }

    /// Stderr: warnings, errors and the stats line.
    pub fn stderr(&self) -> &str {
        &self.output.stderr
    }

    /// The process output and both records, for assertion messages.
    pub fn dump(&self) -> String {
        let lines = |values: &[Value]| {
            values
                .iter()
                .map(Value::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        };
        format!(
            "{}\n--- model inputs ---\n{}\n--- events ---\n{}",
            self.output.dump(),
            lines(&self.inputs),
            lines(&self.events)
        )
    }

    /// The one recorded model input of `turn`/`step`.
    pub fn input(&self, turn: u64, step: u64) -> &Value {
        let found: Vec<&Value> = self
            .inputs
            .iter()
            .filter(|i| num(i, "turn") == turn && num(i, "step") == step)
            .collect();
        match found.as_slice() {
            [one] => one,
            _ => panic!(
                "expected exactly one model input for turn {turn} step {step}, found {}\n{}",
                found.len(),
                self.dump()
            ),
        }
    }

    /// Events of one `type`, in log order.
    pub fn events_of(&self, kind: &str) -> Vec<&Value> {
        self.events
            .iter()
            .filter(|e| e.get("type").and_then(Value::as_str) == Some(kind))
            .collect()
    }

    /// Position of an event in the log (the first one matching `pred`).
    pub fn position(&self, pred: impl Fn(&Value) -> bool) -> Option<usize> {
        self.events.iter().position(pred)
    }

    /// The counter `name` of the `murmur: turns=… analyzer_runs=…` line on stderr (S41).
    pub fn stat(&self, name: &str) -> u64 {
        let line = self
            .stderr()
            .lines()
            .rev()
            .find(|l| l.starts_with("murmur: turns="))
            .unwrap_or_else(|| panic!("no stats line on stderr\n{}", self.dump()));
        let prefix = format!("{name}=");
        line.trim_start_matches("murmur: ")
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(prefix.as_str()))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no counter `{name}` in stats line `{line}`"))
    }
}

/// A string field of a JSON object; panics with the object when missing.
pub fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no string `{key}` in {v}"))
}

/// A number field of a JSON object; panics with the object when missing.
pub fn num(v: &Value, key: &str) -> u64 {
    v.get(key)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("no number `{key}` in {v}"))
}

/// The JSON lines of a record (events, model inputs); a line cut short by a kill is skipped.
pub fn jsonl(path: &Path) -> Vec<Value> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The `messages` array of a recorded model input.
pub fn messages(input: &Value) -> &[Value] {
    input
        .get("messages")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_else(|| panic!("no `messages` array in {input}"))
}

/// The folder of Python packages a test's client uses, installed by `scripts/setup --tests`
/// into `<workspace>/.cache/<dir>`, or `MURMUR_<DIR>_PYTHONPATH` (`openai-server` →
/// `MURMUR_OPENAI_SERVER_PYTHONPATH`). Panics, naming the fix, when `module` is not there.
pub fn python_packages(dir: &str, module: &str) -> PathBuf {
    let var = format!("MURMUR_{}_PYTHONPATH", dir.to_uppercase().replace('-', "_"));
    let path = std::env::var_os(&var)
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".cache").join(dir));
    assert!(
        path.join(module).is_dir(),
        "the Python package `{module}` is not installed in {} ({var} overrides it): run \
         scripts/setup --tests (the README's test command does)",
        path.display()
    );
    path
}

/// Runs a Python test client, `tests/<script>`, with the packages of `.cache/<packages>`
/// (see [`python_packages`]) and these arguments, and parses the one JSON object it prints.
/// Panics with its stderr and `context` (say, the server's log) when it fails.
pub fn python_client(
    script: &str,
    packages: (&str, &str),
    args: &[&OsStr],
    context: impl Fn() -> String,
) -> Value {
    let python = std::env::var_os("PYTHON").unwrap_or_else(|| "python3".into());
    let out = Command::new(python)
        .arg(workspace_root().join("tests").join(script))
        .args(args)
        .env("PYTHONPATH", python_packages(packages.0, packages.1))
        .output()
        .unwrap_or_else(|e| panic!("cannot run python3 for {script}: {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{script} failed: {stderr}\n--- context ---\n{}",
        context()
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{script} printed no JSON object ({e}): {stderr}"))
}

/// A temporary folder laid out for one `murmur` run: `plugins/`, config, scripts, records.
/// Deleted on drop; set `MURMUR_E2E_KEEP=1` to keep the folders of failing tests.
#[derive(Debug)]
pub struct TestDir {
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
    invocations: Cell<usize>,
}

/// Builds the workspace if needed and makes a fresh test folder with an empty `plugins/`.
pub fn setup(name: &str) -> TestDir {
    built();
    let dir = tempfile::Builder::new()
        .prefix(&format!("murmur-e2e-{name}-"))
        .tempdir()
        .expect("create a temporary test folder");
    let path = dir.path().to_path_buf();
    fs::create_dir(path.join("plugins")).expect("create plugins/");
    not_writable_by_others(&path.join("plugins"));
    // The host shadow-copies plugins into $TMPDIR; keep those copies inside the test folder.
    fs::create_dir(path.join("tmp")).expect("create tmp/");
    TestDir {
        dir: Some(dir),
        path,
        invocations: Cell::new(0),
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if std::thread::panicking() && std::env::var_os("MURMUR_E2E_KEEP").is_some() {
            if let Some(dir) = self.dir.take() {
                eprintln!("kept test folder {}", dir.keep().display());
            }
        }
    }
}

impl TestDir {
    /// The folder.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A path inside the folder.
    pub fn join(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.path.join(rel)
    }

    /// Copies fixture libraries (`"configurable"`, `"tools"`, `"wrong-abi"`, …) into
    /// `plugins/`.
    pub fn plugins(&self, names: &[&str]) -> &Self {
        for name in names {
            let from = fixture_library(name);
            let to = self.join("plugins").join(fixture_file_name(name));
            fs::copy(&from, &to).unwrap_or_else(|e| {
                panic!(
                    "cannot copy fixture `{name}` from {} to {}: {e}",
                    from.display(),
                    to.display()
                )
            });
            not_writable_by_others(&to);
        }
        self
    }

    /// Copies a fixture library into `plugins/` under another file name, as a user replaces
    /// a plugin: a temporary file, then a rename over the old one.
    pub fn install_as(&self, fixture: &str, file: &str) -> PathBuf {
        let to = self.join("plugins").join(file);
        let tmp = self.join("plugins").join(format!(".{file}.tmp"));
        fs::copy(fixture_library(fixture), &tmp).expect("copy the fixture");
        not_writable_by_others(&tmp);
        fs::rename(&tmp, &to).expect("rename over the plugin");
        to
    }

    /// Copies the libraries of workspace plugins (`"murmur_rag"`, …) into `plugins/`.
    pub fn libraries(&self, libs: &[&str]) -> &Self {
        for lib in libs {
            let from = plugin_library(lib);
            let to = self
                .join("plugins")
                .join(from.file_name().expect("a file name"));
            fs::copy(&from, &to).unwrap_or_else(|e| {
                panic!("cannot copy {} to {}: {e}", from.display(), to.display())
            });
            not_writable_by_others(&to);
        }
        self
    }

    /// Writes a file (creating folders) and returns its path.
    pub fn write(&self, rel: impl AsRef<Path>, contents: &str) -> PathBuf {
        let path = self.join(rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).expect("create parent folder");
        }
        fs::write(&path, contents)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        not_writable_by_others(&path);
        path
    }

    /// Writes the config file ([`CONFIG`]).
    pub fn config(&self, toml: &str) -> PathBuf {
        self.write(CONFIG, toml)
    }

    /// Writes the model script ([`MODEL_SCRIPT`]), one JSON line per model call.
    pub fn model_script(&self, replies: &[Value]) -> PathBuf {
        let mut text = String::new();
        for reply in replies {
            text.push_str(&reply.to_string());
            text.push('\n');
        }
        self.write(MODEL_SCRIPT, &text)
    }

    /// Writes the conversation ([`CONVERSATION`]): user messages and `@wait` lines.
    pub fn conversation(&self, text: &str) -> PathBuf {
        self.write(CONVERSATION, text)
    }

    /// Runs `murmur run` on the config and conversation of this folder, recording model
    /// inputs and events.
    pub fn run(&self) -> Run {
        let inputs = self.join(INPUTS);
        let events = self.join(EVENTS);
        let output = self.murmur([
            OsStr::new("run"),
            OsStr::new("--config"),
            self.join(CONFIG).as_os_str(),
            OsStr::new("--script"),
            self.join(CONVERSATION).as_os_str(),
            OsStr::new("--record-model-input"),
            inputs.as_os_str(),
            OsStr::new("--events"),
            events.as_os_str(),
        ]);
        Run {
            inputs: read_jsonl(&inputs, &output),
            events: read_jsonl(&events, &output),
            output,
        }
    }

    /// Starts `murmur serve` on this folder's config, on a free loopback port, with these
    /// extra environment variables; returns once it listens.
    pub fn serve(&self, envs: &[(&str, &str)]) -> Server {
        self.serve_with(&[], envs)
    }

    /// [`TestDir::serve`] with extra arguments (e.g. `--events FILE`).
    pub fn serve_with(&self, args: &[&str], envs: &[(&str, &str)]) -> Server {
        let n = self.invocations.get() + 1;
        self.invocations.set(n);
        let stderr_path = self.join(format!("serve-stderr-{n}.txt"));
        let stderr = File::create(&stderr_path).expect("create stderr capture file");
        let mut cmd = Command::new(murmur_binary());
        cmd.args(["serve", "--config", CONFIG, "--listen", "127.0.0.1:0"])
            .args(args)
            .current_dir(&self.path)
            .env("NO_COLOR", "1")
            .env("MURMUR_LOG", "warn")
            .env("TMPDIR", self.join("tmp"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start murmur serve");
        let started = Instant::now();
        loop {
            let log = fs::read_to_string(&stderr_path).unwrap_or_default();
            if let Some(rest) = log.split("listening on http://").nth(1) {
                let addr = rest.split_whitespace().next().unwrap_or_default();
                return Server {
                    child,
                    base: format!("http://{addr}"),
                    stderr: stderr_path,
                };
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("murmur serve exited with {status} before listening:\n{log}");
            }
            if started.elapsed() > RUN_TIMEOUT {
                let _ = child.kill();
                panic!("murmur serve did not listen within {RUN_TIMEOUT:?}:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs the `murmur` binary with these arguments in this folder, killing it after
    /// [`RUN_TIMEOUT`].
    pub fn murmur<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args: Vec<std::ffi::OsString> =
            args.into_iter().map(|a| a.as_ref().to_owned()).collect();
        let shown: Vec<String> = args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let n = self.invocations.get() + 1;
        self.invocations.set(n);
        let stdout_path = self.join(format!("stdout-{n}.txt"));
        let stderr_path = self.join(format!("stderr-{n}.txt"));
        let stdout = File::create(&stdout_path).expect("create stdout capture file");
        let stderr = File::create(&stderr_path).expect("create stderr capture file");
        let started = Instant::now();
        let mut child = Command::new(murmur_binary())
            .args(&args)
            .current_dir(&self.path)
            .env("NO_COLOR", "1")
            .env("MURMUR_LOG", "warn")
            .env("TMPDIR", self.join("tmp"))
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .expect("spawn the murmur binary");
        let status = loop {
            match child.try_wait().expect("poll the murmur process") {
                Some(status) => break status,
                None if started.elapsed() > RUN_TIMEOUT => {
                    // Only this child, by its handle.
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "murmur {} did not exit within {RUN_TIMEOUT:?}; killed\n--- stdout ---\n{}\n--- stderr ---\n{}",
                        shown.join(" "),
                        read_lossy(&stdout_path),
                        read_lossy(&stderr_path)
                    );
                }
                None => std::thread::sleep(Duration::from_millis(10)),
            }
        };
        Output {
            args: shown,
            stdout: read_lossy(&stdout_path),
            stderr: read_lossy(&stderr_path),
            code: status.code(),
            elapsed: started.elapsed(),
        }
    }
}

/// Clears the group and other write bits, which the host refuses in plugin folders and
/// files, whatever the umask the tests run under.
fn not_writable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = fs::metadata(path)
        .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()))
        .permissions()
        .mode();
    fs::set_permissions(path, fs::Permissions::from_mode(mode & !0o022))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

fn read_lossy(path: &Path) -> String {
    fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// Parses a JSON Lines record; a missing file (e.g. the run failed before writing it) is
/// an empty record.
fn read_jsonl(path: &Path, output: &Output) -> Vec<Value> {
    let Ok(text) = fs::read_to_string(path) else {
        return Vec::new();
    };
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| {
                panic!(
                    "{}: not a JSON line ({e}): {l}\n{}",
                    path.display(),
                    output.dump()
                )
            })
        })
        .collect()
}

/// A running `murmur serve`; killed when dropped.
#[derive(Debug)]
pub struct Server {
    child: std::process::Child,
    base: String,
    stderr: PathBuf,
}

impl Server {
    /// `http://127.0.0.1:PORT` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// What the server wrote to stderr so far.
    pub fn stderr(&self) -> String {
        fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends a signal by name (`HUP`, `INT`, ...).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args(["-s", name, &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -s {name} failed");
    }

    /// Waits until stderr contains `text` (or panics after a minute with what it has).
    pub fn wait_for_stderr(&self, text: &str) {
        let started = Instant::now();
        while !self.stderr().contains(text) {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "murmur serve never wrote `{text}`:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the process with SIGKILL (no chance to clean up) and waits for it.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One server-sent event: its name and JSON data.
#[derive(Debug, Clone)]
pub struct SseEvent {
    /// The `event:` field.
    pub name: String,
    /// The `data:` field, parsed.
    pub data: Value,
}

/// Reads a server-sent-event stream to its end.
pub fn read_sse(response: reqwest::blocking::Response) -> Vec<SseEvent> {
    let (events, ended) = read_sse_until_broken(response);
    assert!(ended, "the event stream broke off after {events:?}");
    events
}

/// Reads a server-sent-event stream until it ends or breaks off (a killed server); the
/// events read, and whether the stream ended normally.
pub fn read_sse_until_broken(response: reqwest::blocking::Response) -> (Vec<SseEvent>, bool) {
    use std::io::BufRead as _;
    let mut out = Vec::new();
    let (mut name, mut data) = (String::new(), String::new());
    for line in std::io::BufReader::new(response).lines() {
        let Ok(line) = line else {
            return (out, false);
        };
        if line.is_empty() {
            if !data.is_empty() {
                let parsed = serde_json::from_str(&data)
                    .unwrap_or_else(|e| panic!("event data is not JSON ({e}): {data}"));
                out.push(SseEvent {
                    name: std::mem::take(&mut name),
                    data: parsed,
                });
            }
            name.clear();
            data.clear();
        } else if let Some(v) = line.strip_prefix("event:") {
            name = v.trim().to_string();
        } else if let Some(v) = line.strip_prefix("data:") {
            data.push_str(v.trim_start());
        }
    }
    (out, true)
}
