//! `murmur plugin-runner`: the child side of out-of-process isolation. It loads one
//! analyzer from its library and runs it whenever the host asks, over stdin and stdout
//! ([`super::protocol`]). Whatever the plugin does to this process (a segfault, an abort, an
//! exit, running out of memory, an endless loop) ends or stalls the child, never the host.
//!
//! Only protocol frames go to the real stdout: the process's stdout is pointed at stderr,
//! so a plugin that prints cannot corrupt the pipe.

use std::fs::File;
use std::io::{BufReader, Stdin};
use std::process::ExitCode;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use abi_stable::std_types::{RErr, RNone, ROk, ROption, RResult, RSome, RStr, RString};
use murmur_plugin_api::ffi::{ErrorCode, FfiAnalyzerBox, FfiError, FfiHostServices};

use super::bridge::{self, CallInput};
use super::loader;
use super::protocol::{
    read_frame, write_frame, FromRunner, RunFrame, ToRunner, WireError, PROTOCOL,
};
use crate::services::HOST_CAPABILITIES;

/// Runs until the host closes the pipe. Exit code 0 then; 2 on a broken protocol.
pub fn main() -> ExitCode {
    match serve() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("murmur plugin-runner: {e}");
            ExitCode::from(2)
        }
    }
}

struct Io {
    input: BufReader<Stdin>,
    output: File,
}

impl Io {
    fn send(&mut self, frame: &FromRunner) -> Result<(), String> {
        write_frame(&mut self.output, frame).map_err(|e| format!("cannot write to the host: {e}"))
    }

    fn receive(&mut self) -> Result<Option<ToRunner>, String> {
        read_frame(&mut self.input).map_err(|e| format!("cannot read from the host: {e}"))
    }
}

fn serve() -> Result<(), String> {
    let output = rustix::io::dup(std::io::stdout())
        .map_err(|e| format!("cannot take stdout for the protocol: {e}"))?;
    rustix::stdio::dup2_stdout(std::io::stderr())
        .map_err(|e| format!("cannot point stdout at stderr: {e}"))?;
    let mut io = Io {
        input: BufReader::new(std::io::stdin()),
        output: File::from(output),
    };
    let Some(hello) = io.receive()? else {
        return Ok(());
    };
    let instance = match open(hello) {
        Ok((instance, ready)) => {
            io.send(&ready)?;
            instance
        }
        Err(message) => return io.send(&FromRunner::Refused { message }),
    };
    let runner = Runner {
        io: Mutex::new(io),
        deadline: Mutex::new(SystemTime::now()),
    };
    loop {
        let Some(frame) = runner.io().receive()? else {
            return Ok(());
        };
        let ToRunner::Run(run) = frame else {
            return Err(format!("expected a run, got {frame:?}"));
        };
        let result = runner.run(&instance, &run);
        runner.io().send(&FromRunner::Done { result })?;
    }
}

/// Loads the analyzer the hello names.
fn open(hello: ToRunner) -> Result<(FfiAnalyzerBox, FromRunner), String> {
    let ToRunner::Hello {
        protocol,
        library,
        plugin,
        config_json,
        check_owner,
        memory_limit,
    } = hello
    else {
        return Err(format!("expected a hello, got {hello:?}"));
    };
    if protocol != PROTOCOL {
        return Err(format!(
            "the host speaks plugin-runner protocol {protocol}, this runner {PROTOCOL}"
        ));
    }
    if let Some(limit) = memory_limit {
        let limit = rustix::process::Rlimit {
            current: Some(limit),
            maximum: Some(limit),
        };
        rustix::process::setrlimit(rustix::process::Resource::As, limit)
            .map_err(|e| format!("cannot set the memory limit: {e}"))?;
    }
    let lib = loader::load_file(&library, check_owner)
        .map_err(|r| format!("{}: {}", r.file.display(), r.reason))?;
    if !lib.manifest.analyzers.iter().any(|a| a.name == plugin) {
        return Err(format!(
            "{} exports no analyzer named `{plugin}`",
            library.display()
        ));
    }
    let instance = (lib.module.new_analyzer())(plugin.as_str().into(), config_json.as_str().into())
        .into_result()
        .map_err(|e| {
            format!(
                "{} refused its config: {}",
                library.display(),
                e.message.as_str()
            )
        })?;
    let ready = FromRunner::Ready {
        protocol: PROTOCOL,
        plugin: lib.manifest.name.clone(),
        version: lib.manifest.version.clone(),
    };
    // Libraries are never unloaded: the instance's code stays mapped when `lib` goes.
    Ok((instance, ready))
}

/// The host services of a run, answered by the host over the pipe.
struct Runner {
    io: Mutex<Io>,
    deadline: Mutex<SystemTime>,
}

impl Runner {
    fn io(&self) -> std::sync::MutexGuard<'_, Io> {
        self.io.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn run(
        &self,
        instance: &FfiAnalyzerBox,
        run: &RunFrame,
    ) -> Result<Vec<super::protocol::WireInjection>, WireError> {
        let deadline = UNIX_EPOCH + Duration::from_millis(run.deadline_unix_ms);
        *self.deadline.lock().unwrap_or_else(PoisonError::into_inner) = deadline;
        let messages = bridge::AbiMessages::of(&run.messages);
        let input = CallInput {
            session: &run.session,
            hook: run.hook,
            turn: run.turn,
            step: run.step,
            messages: messages.slice(),
            latest_user: run.latest_user.as_deref(),
            latest_reply: run.latest_reply.as_deref(),
            config_json: &run.config_json,
            deadline,
        };
        bridge::analyze(instance, &input, self)
            .map(|v| v.into_iter().map(Into::into).collect())
            .map_err(Into::into)
    }

    /// Sends a request and waits for the host's reply.
    fn ask(&self, request: FromRunner) -> Result<String, WireError> {
        let gone = |e: String| WireError {
            code: ErrorCode::Failed as u32,
            message: e,
        };
        let mut io = self.io();
        io.send(&request).map_err(gone)?;
        match io.receive().map_err(gone)? {
            Some(ToRunner::Reply { result }) => result,
            other => Err(gone(format!(
                "expected a reply from the host, got {other:?}"
            ))),
        }
    }
}

impl FfiHostServices for Runner {
    fn log(&self, level: u8, message: RStr<'_>) {
        let _ = self.io().send(&FromRunner::Log {
            level,
            message: message.as_str().to_string(),
        });
    }

    fn state_get(&self, key: RStr<'_>) -> ROption<RString> {
        let answer = self.ask(FromRunner::StateGet {
            key: key.as_str().to_string(),
        });
        match answer.map(|json| serde_json::from_str::<Option<String>>(&json)) {
            Ok(Ok(Some(v))) => RSome(v.into()),
            _ => RNone,
        }
    }

    fn state_put(&self, key: RStr<'_>, value: ROption<RStr<'_>>) {
        let _ = self.io().send(&FromRunner::StatePut {
            key: key.as_str().to_string(),
            value: value.into_option().map(|v| v.as_str().to_string()),
        });
    }

    fn cancelled(&self) -> bool {
        SystemTime::now() >= *self.deadline.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn call(&self, service: RStr<'_>, request_json: RStr<'_>) -> RResult<RString, FfiError> {
        match self.ask(FromRunner::Service {
            service: service.as_str().to_string(),
            request_json: request_json.as_str().to_string(),
        }) {
            Ok(json) => ROk(json.into()),
            Err(e) => RErr(FfiError {
                code: e.code,
                message: e.message.into(),
            }),
        }
    }

    fn capabilities(&self) -> RString {
        serde_json::to_string(HOST_CAPABILITIES)
            .unwrap_or_default()
            .into()
    }
}
