//! A real OpenAI-compatible server for the `openai` provider tests: llama.cpp's own HTTP
//! server (from the `xllamacpp` Python package, which `scripts/setup` installs into
//! `.cache/openai-server`) serving the default SmolLM2 model on a free loopback port.
//!
//! The server is `tests/openai-server/serve.py`; it prints `listening http://HOST:PORT` once
//! the model is loaded. [`OpenAiServer`] kills it on drop (or earlier, with
//! [`OpenAiServer::kill`], to test a server that dies mid-stream).

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::{model_path, python_packages, workspace_root};

/// The longest the server may take to load the model and start listening.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A running server process.
#[derive(Debug)]
pub struct OpenAiServer {
    child: Child,
    url: String,
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl OpenAiServer {
    /// Starts the server with a context of `ctx` tokens and waits until it listens.
    pub fn start(ctx: u32) -> OpenAiServer {
        let script = workspace_root()
            .join("tests")
            .join("openai-server")
            .join("serve.py");
        let python = std::env::var_os("PYTHON").unwrap_or_else(|| OsString::from("python3"));
        let mut child = Command::new(&python)
            .arg(&script)
            .arg(model_path())
            .args(["--ctx", &ctx.to_string()])
            .env("PYTHONPATH", python_packages("openai-server", "xllamacpp"))
            // OpenMP threads sleep instead of spinning: the machine is shared with the tests.
            .env("OMP_WAIT_POLICY", "PASSIVE")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {python:?} {}: {e}", script.display()));
        // Collect stderr (the server's log) on a thread, for failure messages.
        let stderr = child.stderr.take().map(|mut pipe| {
            std::thread::spawn(move || {
                let mut log = String::new();
                let _ = pipe.read_to_string(&mut log);
                log
            })
        });
        let (tx, rx) = mpsc::channel();
        if let Some(stdout) = child.stdout.take() {
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if let Some(url) = line.strip_prefix("listening ") {
                        let _ = tx.send(url.trim().to_string());
                    }
                }
            });
        }
        let mut server = OpenAiServer {
            child,
            url: String::new(),
            stderr,
        };
        match rx.recv_timeout(START_TIMEOUT) {
            Ok(url) => server.url = url,
            Err(_) => {
                let log = server.kill();
                panic!("the OpenAI-compatible test server did not start within {START_TIMEOUT:?}:\n{log}");
            }
        }
        server
    }

    /// The API root to configure as `base_url`: `http://HOST:PORT/v1`.
    pub fn base_url(&self) -> String {
        format!("{}/v1", self.url)
    }

    /// Kills the server now and returns its log.
    pub fn kill(&mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.stderr
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for OpenAiServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
