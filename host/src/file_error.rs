//! An error in a line-oriented input file (model scripts, conversation scripts).

use std::fmt;
use std::path::PathBuf;

/// A problem at a line of a file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct FileError {
    /// The file.
    pub file: PathBuf,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl FileError {
    /// An error at a line.
    pub fn at(file: impl Into<PathBuf>, line: usize, message: impl Into<String>) -> Self {
        FileError {
            file: file.into(),
            line: Some(line),
            message: message.into(),
        }
    }

    /// An error about the whole file.
    pub fn file(file: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        FileError {
            file: file.into(),
            line: None,
            message: message.into(),
        }
    }
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        write!(f, ": {}", self.message)
    }
}
