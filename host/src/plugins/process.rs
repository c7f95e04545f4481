//! Out-of-process analyzers (`isolation = "process"`): the host side. Each such analyzer
//! instance has one `murmur plugin-runner` child that loads the same `.so`
//! ([`super::runner`]); its runs go to the child one at a time over the pipe
//! ([`super::protocol`]), and its calls to host services come back the same way.
//!
//! A child that dies during a run (segfault, abort, exit, out of memory) ends that run as
//! crashed, with how it ended and the last line it wrote to stderr; the next run starts a
//! new child. At the hard timeout the driver drops the run, which kills the child
//! (`kill_on_drop`): an endless loop costs one process, not a host thread.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use murmur_plugin_api::Injection;
use tokio::io::AsyncBufReadExt as _;
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use super::protocol::{self, FromRunner, RunFrame, ToRunner, WireError, PROTOCOL};
use crate::analyzer::{AnalyzerBackend, RunError, RunRequest};
use crate::model::BoxFuture;
use crate::services::CallScope;

/// How long a new child may take to load its library and answer the hello.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// What a runner child is started with.
#[derive(Debug, Clone)]
pub struct RunnerSpec {
    /// The `murmur` binary (it runs `murmur plugin-runner`).
    pub exe: PathBuf,
    /// The plugin library.
    pub library: PathBuf,
    /// The analyzer's export name.
    pub plugin: String,
    /// Its config table as JSON.
    pub config_json: String,
    /// Refuse a library other users could have written.
    pub check_owner: bool,
    /// The child's address-space limit in bytes.
    pub memory_limit: Option<u64>,
    /// The instance name, for log lines.
    pub name: String,
}

impl RunnerSpec {
    fn hello(&self) -> ToRunner {
        ToRunner::Hello {
            protocol: PROTOCOL,
            library: self.library.clone(),
            plugin: self.plugin.clone(),
            config_json: self.config_json.clone(),
            check_owner: self.check_owner,
            memory_limit: self.memory_limit,
        }
    }

    fn command(&self) -> std::process::Command {
        let mut cmd = std::process::Command::new(&self.exe);
        cmd.arg("plugin-runner")
            .env("OMP_WAIT_POLICY", "PASSIVE")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    /// Starts a child, checks that it loads the analyzer with this config, and lets it go:
    /// the errors a config can cause show at startup, not at the first run.
    pub fn check(&self) -> Result<(), String> {
        let mut child = self
            .command()
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start {} plugin-runner: {e}", self.exe.display()))?;
        let answer = (|| {
            let mut stdin = child.stdin.take().ok_or("no pipe to the runner")?;
            let mut stdout = child.stdout.take().ok_or("no pipe from the runner")?;
            protocol::write_frame(&mut stdin, &self.hello()).map_err(|e| e.to_string())?;
            protocol::read_frame::<FromRunner>(&mut stdout).map_err(|e| e.to_string())
        })();
        let _ = child.kill();
        let status = child.wait().ok();
        match answer {
            Ok(Some(FromRunner::Ready { .. })) => Ok(()),
            Ok(Some(FromRunner::Refused { message })) => Err(message),
            Ok(other) => Err(format!(
                "the plugin runner did not start: {}",
                other.map_or_else(
                    || status.map_or_else(|| "it ended".to_string(), describe),
                    |f| format!("unexpected {f:?}")
                )
            )),
            Err(e) => Err(format!("the plugin runner did not start: {e}")),
        }
    }
}

/// An analyzer that runs in a child process.
pub struct ProcessAnalyzer {
    spec: Arc<RunnerSpec>,
    child: Arc<tokio::sync::Mutex<Option<Runner>>>,
}

impl ProcessAnalyzer {
    /// An analyzer whose child starts at its first run.
    pub fn new(spec: RunnerSpec) -> Self {
        ProcessAnalyzer {
            spec: Arc::new(spec),
            child: Arc::default(),
        }
    }
}

/// A running child and its pipes.
struct Runner {
    process: Child,
    stdin: ChildStdin,
    stdout: ChildStdout,
    /// The first line it wrote to stderr since the current run (or the start) began: the
    /// cause of a crash, more often than what follows it (a backtrace).
    last_words: Arc<Mutex<Option<String>>>,
}

/// How a child's exit status reads in a message.
fn describe(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt as _;
    if let Some(signal) = status.signal() {
        let name = match signal {
            4 => " (SIGILL)",
            6 => " (SIGABRT)",
            7 => " (SIGBUS)",
            8 => " (SIGFPE)",
            9 => " (SIGKILL)",
            11 => " (SIGSEGV)",
            15 => " (SIGTERM)",
            _ => "",
        };
        format!("was killed by signal {signal}{name}")
    } else if let Some(code) = status.code() {
        format!("exited with code {code}")
    } else {
        format!("ended ({status})")
    }
}

impl Runner {
    async fn start(spec: &RunnerSpec) -> Result<Runner, RunError> {
        let mut process = Command::from(spec.command())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                RunError::Failed(format!(
                    "cannot start {} plugin-runner: {e}",
                    spec.exe.display()
                ))
            })?;
        let (Some(stdin), Some(stdout), Some(stderr)) = (
            process.stdin.take(),
            process.stdout.take(),
            process.stderr.take(),
        ) else {
            return Err(RunError::Failed("the plugin runner has no pipes".into()));
        };
        // Its stderr (and what the plugin prints) goes to ours, line by line, tagged.
        let last_words = Arc::new(Mutex::new(None));
        let (words, name) = (last_words.clone(), spec.name.clone());
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                eprintln!("murmur: analyzer `{name}` (plugin-runner): {line}");
                words
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .get_or_insert(line);
            }
        });
        let mut runner = Runner {
            process,
            stdin,
            stdout,
            last_words,
        };
        let handshake = async {
            protocol::send(&mut runner.stdin, &spec.hello()).await?;
            protocol::receive::<FromRunner>(&mut runner.stdout).await
        };
        match tokio::time::timeout(START_TIMEOUT, handshake).await {
            Ok(Ok(Some(FromRunner::Ready { .. }))) => Ok(runner),
            Ok(Ok(Some(FromRunner::Refused { message }))) => Err(RunError::Failed(format!(
                "the plugin runner refused the analyzer: {message}"
            ))),
            Ok(Ok(Some(other))) => Err(RunError::Failed(format!(
                "the plugin runner answered the hello with {other:?}"
            ))),
            Ok(Ok(None)) | Ok(Err(_)) => Err(runner.ended("while starting").await),
            Err(_) => Err(RunError::Failed(format!(
                "the plugin runner did not answer within {}",
                humantime::format_duration(START_TIMEOUT)
            ))),
        }
    }

    /// The child is gone or broke the protocol: how it ended, as a crash.
    async fn ended(&mut self, when: &str) -> RunError {
        let _ = self.process.start_kill();
        let how = match tokio::time::timeout(Duration::from_secs(5), self.process.wait()).await {
            Ok(Ok(status)) => describe(status),
            _ => "stopped answering".to_string(),
        };
        // Give the stderr task a moment to take the last line.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let words = self
            .last_words
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let mut message = format!("the analyzer's process {how} {when}");
        if let Some(words) = words {
            message.push_str(&format!("; it wrote: {words}"));
        }
        RunError::Crashed(message)
    }

    /// One run: the frame out, host services served, the result back.
    async fn run(&mut self, request: &RunRequest) -> Result<Vec<Injection>, RunError> {
        *self
            .last_words
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
        let frame = ToRunner::Run(RunFrame {
            session: request.session.to_string(),
            analyzer: request.analyzer.to_string(),
            hook: request.hook,
            turn: request.turn,
            step: request.step,
            messages: request.view.messages.clone(),
            latest_user: request.view.latest_user.clone(),
            latest_reply: request.view.latest_reply.clone(),
            config_json: request.config_json.to_string(),
            deadline_unix_ms: murmur_plugin_api::ffi::unix_ms(request.deadline),
        });
        if protocol::send(&mut self.stdin, &frame).await.is_err() {
            return Err(self.ended("before the run").await);
        }
        loop {
            let frame = match protocol::receive::<FromRunner>(&mut self.stdout).await {
                Ok(Some(frame)) => frame,
                Ok(None) | Err(protocol::FrameError::Io(_)) => {
                    return Err(self.ended("during the run").await)
                }
                Err(e) => {
                    return Err(self
                        .ended(&format!("after it broke the protocol ({e})"))
                        .await)
                }
            };
            let reply = match frame {
                FromRunner::Done { result } => {
                    return result
                        .map(|v| v.into_iter().map(Into::into).collect())
                        .map_err(Into::into)
                }
                FromRunner::Log { level, message } => {
                    super::bridge::plugin_log(level, &request.analyzer, &request.session, &message);
                    continue;
                }
                FromRunner::StatePut { key, value } => {
                    request
                        .state
                        .put(&request.analyzer, &request.session, &key, value);
                    continue;
                }
                FromRunner::StateGet { key } => {
                    let value = request.state.get(&request.analyzer, &request.session, &key);
                    serde_json::to_string(&value).map_err(|e| WireError {
                        code: murmur_plugin_api::ffi::ErrorCode::Failed as u32,
                        message: e.to_string(),
                    })
                }
                FromRunner::Service {
                    service,
                    request_json,
                } => serve(request, service, request_json).await,
                other @ (FromRunner::Ready { .. } | FromRunner::Refused { .. }) => {
                    return Err(self
                        .ended(&format!("after it sent {other:?} during a run"))
                        .await)
                }
            };
            let reply = ToRunner::Reply { result: reply };
            if protocol::send(&mut self.stdin, &reply).await.is_err() {
                return Err(self.ended("during the run").await);
            }
        }
    }
}

/// A host service for the child, on the blocking pool like in-process plugin calls.
async fn serve(
    request: &RunRequest,
    service: String,
    request_json: String,
) -> Result<String, WireError> {
    let unsupported = || WireError {
        code: murmur_plugin_api::ffi::ErrorCode::Unsupported as u32,
        message: format!("host service `{service}` is not available here"),
    };
    let Some(hub) = request.services.clone() else {
        return Err(unsupported());
    };
    let (session, default_model, cancel, deadline, tokens) = (
        request.session.clone(),
        request.default_model.clone(),
        request.cancel.clone(),
        request.deadline,
        request.tokens.clone(),
    );
    tokio::task::spawn_blocking(move || {
        let scope = CallScope {
            session: &session,
            default_model: default_model.as_deref(),
            cancel: &cancel,
            deadline,
            tokens: &tokens,
        };
        super::bridge::call_service(&hub, &service, &request_json, &scope).map_err(
            |(code, message)| WireError {
                code: code as u32,
                message,
            },
        )
    })
    .await
    .unwrap_or_else(|e| {
        Err(WireError {
            code: murmur_plugin_api::ffi::ErrorCode::Failed as u32,
            message: format!("host service task ended abnormally: {e}"),
        })
    })
}

impl AnalyzerBackend for ProcessAnalyzer {
    fn run(&self, request: RunRequest) -> BoxFuture<'static, Result<Vec<Injection>, RunError>> {
        let (spec, slot) = (self.spec.clone(), self.child.clone());
        Box::pin(async move {
            // One run at a time per child; a run dropped at its hard timeout drops (and so
            // kills) the child it holds, and the next run starts a new one.
            let mut slot = slot.lock_owned().await;
            let mut runner = match slot.take() {
                Some(r) => r,
                None => Runner::start(&spec).await?,
            };
            let result = runner.run(&request).await;
            if !matches!(result, Err(RunError::Crashed(_))) {
                *slot = Some(runner);
            }
            result
        })
    }
}
