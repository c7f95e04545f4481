//! The protocol between the host and a `murmur plugin-runner` child that runs one analyzer
//! out of process (`isolation = "process"`).
//!
//! Frames go over the child's stdin and stdout: a 4-byte big-endian length, then that many
//! bytes of JSON. The host opens with [`ToRunner::Hello`] (protocol version, library, export
//! name, config); the child answers [`FromRunner::Ready`] or [`FromRunner::Refused`]. Then,
//! one at a time, the host sends [`ToRunner::Run`] and the child answers
//! [`FromRunner::Done`]; in between, the child may ask for host services (`complete`,
//! `search`, state) and the host answers each with [`ToRunner::Reply`], or log.
//!
//! A version mismatch is refused in the handshake: both sides are the same binary in
//! practice, but the version makes a stale runner fail clearly rather than strangely.

use std::io::{Read, Write};
use std::path::PathBuf;

use murmur_plugin_api::{Hook, Injection, Role};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::analyzer::RunError;

/// The protocol version both sides must speak.
pub const PROTOCOL: u32 = 1;

/// The largest frame either side accepts.
pub const MAX_FRAME: usize = 64 << 20;

/// What the host sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToRunner {
    /// Load this analyzer.
    Hello {
        /// [`PROTOCOL`].
        protocol: u32,
        /// The plugin library.
        library: PathBuf,
        /// The analyzer's export name.
        plugin: String,
        /// Its `[analyzer.config]` as JSON.
        config_json: String,
        /// Refuse a library that other users could have written.
        check_owner: bool,
        /// Address-space limit of the child, in bytes.
        memory_limit: Option<u64>,
    },
    /// Run once.
    Run(RunFrame),
    /// The answer to a [`FromRunner::Service`] or [`FromRunner::StateGet`].
    Reply {
        /// The service's JSON answer (for state: the value, or `null`), or the error.
        result: Result<String, WireError>,
    },
}

/// One run, as [`crate::analyzer::RunRequest`] gives it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunFrame {
    /// Session id.
    pub session: String,
    /// The analyzer instance's name.
    pub analyzer: String,
    /// The hook.
    pub hook: Hook,
    /// The turn it is about.
    pub turn: u64,
    /// The step it is about.
    pub step: u32,
    /// The model messages so far.
    pub messages: crate::model::Messages,
    /// The latest user message.
    pub latest_user: Option<String>,
    /// The latest reply.
    pub latest_reply: Option<String>,
    /// The analyzer's config as JSON.
    pub config_json: String,
    /// The hard deadline, in milliseconds since the Unix epoch.
    pub deadline_unix_ms: u64,
}

/// What the child sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FromRunner {
    /// The analyzer is loaded.
    Ready {
        /// [`PROTOCOL`].
        protocol: u32,
        /// The plugin's name and version.
        plugin: String,
        /// ″
        version: String,
    },
    /// It could not be loaded; why.
    Refused {
        /// The reason.
        message: String,
    },
    /// Calls a host service; a [`ToRunner::Reply`] answers.
    Service {
        /// Its name (`complete`, `search`).
        service: String,
        /// The request.
        request_json: String,
    },
    /// Reads the analyzer's state for the run's session; a [`ToRunner::Reply`] answers.
    StateGet {
        /// The key.
        key: String,
    },
    /// Writes (or removes) the analyzer's state for the run's session.
    StatePut {
        /// The key.
        key: String,
        /// The value, or `None` to remove it.
        value: Option<String>,
    },
    /// A log line of the analyzer.
    Log {
        /// 0 error … 4 trace.
        level: u8,
        /// The text.
        message: String,
    },
    /// The run ended.
    Done {
        /// Its injections, or why there are none.
        result: Result<Vec<WireInjection>, WireError>,
    },
}

/// An error crossing the pipe: the plugin API's error code and the message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireError {
    /// `murmur_plugin_api::ffi::ErrorCode` as a number.
    pub code: u32,
    /// The message.
    pub message: String,
}

/// An injection crossing the pipe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireInjection {
    /// Its role.
    pub role: Role,
    /// Its text.
    pub content: String,
    /// Its supersede key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Its details.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
}

impl From<Injection> for WireInjection {
    fn from(i: Injection) -> Self {
        WireInjection {
            role: i.role,
            content: i.content,
            key: i.key,
            details: i.details,
        }
    }
}

impl From<WireInjection> for Injection {
    fn from(i: WireInjection) -> Self {
        Injection {
            role: i.role,
            content: i.content,
            key: i.key,
            details: i.details,
        }
    }
}

impl From<RunError> for WireError {
    fn from(e: RunError) -> Self {
        use murmur_plugin_api::ffi::ErrorCode;
        let (code, message) = match e {
            RunError::Failed(m) | RunError::Crashed(m) => (ErrorCode::Failed, m),
            RunError::Panicked(m) => (ErrorCode::Panicked, m),
            RunError::Cancelled(m) => (ErrorCode::Cancelled, m),
        };
        WireError {
            code: code as u32,
            message,
        }
    }
}

impl From<WireError> for RunError {
    fn from(e: WireError) -> Self {
        use murmur_plugin_api::ffi::ErrorCode;
        match ErrorCode::from_u32(e.code) {
            ErrorCode::Panicked => RunError::Panicked(e.message),
            ErrorCode::Cancelled => RunError::Cancelled(e.message),
            _ => RunError::Failed(e.message),
        }
    }
}

/// A frame that could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The pipe failed or closed mid-frame.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// A length over [`MAX_FRAME`].
    #[error("a frame of {0} bytes is over the limit of {MAX_FRAME}")]
    TooLarge(usize),
    /// Not a frame of this protocol.
    #[error("unreadable frame: {0}")]
    Json(#[from] serde_json::Error),
}

/// Decodes one frame's body.
pub fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, FrameError> {
    Ok(serde_json::from_slice(body)?)
}

fn encode<T: Serialize>(frame: &T) -> Result<Vec<u8>, FrameError> {
    let body = serde_json::to_vec(frame)?;
    let len = u32::try_from(body.len()).map_err(|_| FrameError::TooLarge(body.len()))?;
    if body.len() > MAX_FRAME {
        return Err(FrameError::TooLarge(body.len()));
    }
    let mut out = Vec::with_capacity(4 + body.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

fn checked_len(prefix: [u8; 4]) -> Result<usize, FrameError> {
    let len = u32::from_be_bytes(prefix) as usize;
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge(len));
    }
    Ok(len)
}

/// Writes one frame (blocking).
pub fn write_frame<T: Serialize>(w: &mut impl Write, frame: &T) -> Result<(), FrameError> {
    w.write_all(&encode(frame)?)?;
    w.flush()?;
    Ok(())
}

/// Reads one frame (blocking); `None` at a clean end of the stream.
pub fn read_frame<T: DeserializeOwned>(r: &mut impl Read) -> Result<Option<T>, FrameError> {
    let mut prefix = [0u8; 4];
    match r.read_exact(&mut prefix) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let mut body = vec![0u8; checked_len(prefix)?];
    r.read_exact(&mut body)?;
    decode(&body).map(Some)
}

/// Writes one frame.
pub async fn send<T: Serialize>(
    w: &mut (impl AsyncWrite + Unpin),
    frame: &T,
) -> Result<(), FrameError> {
    w.write_all(&encode(frame)?).await?;
    w.flush().await?;
    Ok(())
}

/// Reads one frame; `None` at a clean end of the stream.
pub async fn receive<T: DeserializeOwned>(
    r: &mut (impl AsyncRead + Unpin),
) -> Result<Option<T>, FrameError> {
    let mut prefix = [0u8; 4];
    match r.read_exact(&mut prefix).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let mut body = vec![0u8; checked_len(prefix)?];
    r.read_exact(&mut body).await?;
    decode(&body).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_a_clean_end_is_none() {
        let frames = vec![
            FromRunner::Log {
                level: 2,
                message: "hi".into(),
            },
            FromRunner::Done {
                result: Ok(vec![WireInjection {
                    role: Role::User,
                    content: "note".into(),
                    key: Some("k".into()),
                    details: Some(serde_json::json!({"n": 1})),
                }]),
            },
        ];
        let mut buf = Vec::new();
        for f in &frames {
            write_frame(&mut buf, f).expect("write");
        }
        let mut r = buf.as_slice();
        for f in &frames {
            assert_eq!(
                read_frame::<FromRunner>(&mut r).expect("read").as_ref(),
                Some(f)
            );
        }
        assert!(read_frame::<FromRunner>(&mut r).expect("end").is_none());
    }

    #[test]
    fn oversized_cut_and_foreign_frames_are_errors() {
        let mut huge = Vec::from(u32::MAX.to_be_bytes());
        huge.extend_from_slice(b"{}");
        assert!(matches!(
            read_frame::<ToRunner>(&mut huge.as_slice()),
            Err(FrameError::TooLarge(_))
        ));
        let mut cut = Vec::from(10u32.to_be_bytes());
        cut.extend_from_slice(b"{\"ty");
        assert!(matches!(
            read_frame::<ToRunner>(&mut cut.as_slice()),
            Err(FrameError::Io(_))
        ));
        let mut foreign = Vec::from(2u32.to_be_bytes());
        foreign.extend_from_slice(b"[]");
        assert!(matches!(
            read_frame::<ToRunner>(&mut foreign.as_slice()),
            Err(FrameError::Json(_))
        ));
    }
}
