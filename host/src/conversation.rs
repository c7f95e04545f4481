//! Conversation scripts for `murmur run`: one user message per line.
//!
//! Blank lines and lines starting with `#` are skipped; `@wait 250ms` (any humane duration:
//! `2s`, `1m 30s`) idles that long before the next message.

use std::path::Path;
use std::time::Duration;

use crate::file_error::FileError;

/// One step of a conversation script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// Send this user message and wait for its reply.
    Say(String),
    /// Idle this long.
    Wait(Duration),
}

/// Reads a conversation script.
pub fn load(path: &Path) -> Result<Vec<Line>, FileError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| FileError::file(path, format!("cannot read the conversation script: {e}")))?;
    parse(&text, path)
}

/// Parses conversation script text as if read from `path`.
pub fn parse(text: &str, path: &Path) -> Result<Vec<Line>, FileError> {
    let mut lines = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some(directive) = line.strip_prefix('@') else {
            lines.push(Line::Say(line.to_string()));
            continue;
        };
        let (name, arg) = directive
            .split_once(char::is_whitespace)
            .unwrap_or((directive, ""));
        match name {
            "wait" => {
                let d = humantime::parse_duration(arg.trim()).map_err(|e| {
                    FileError::at(
                        path,
                        i + 1,
                        format!(
                            "`@wait {}`: not a duration ({e}); write e.g. `@wait 250ms`",
                            arg.trim()
                        ),
                    )
                })?;
                lines.push(Line::Wait(d));
            }
            other => {
                return Err(FileError::at(
                    path,
                    i + 1,
                    format!("unknown directive `@{other}`; the only directive is `@wait DURATION`"),
                ))
            }
        }
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_messages_waits_and_skips_comments() {
        let lines = parse(
            "# demo\nHello\n\n@wait 250ms\n  What now?  \n@wait 1m 30s\n",
            Path::new("c.txt"),
        )
        .expect("valid");
        assert_eq!(
            lines,
            vec![
                Line::Say("Hello".into()),
                Line::Wait(Duration::from_millis(250)),
                Line::Say("What now?".into()),
                Line::Wait(Duration::from_secs(90)),
            ]
        );
    }

    #[test]
    fn bad_directives_name_the_line() {
        let e = parse("hi\n@wait soon\n", Path::new("c.txt")).expect_err("bad wait");
        assert_eq!(e.to_string().split(": ").next(), Some("c.txt:2"));
        let e = parse("@pause 1s\n", Path::new("c.txt")).expect_err("unknown");
        assert!(e.message.contains("unknown directive `@pause`"));
    }
}
