//! File-and-line diagnostics shared by the catalog and the policy loaders.
//!
//! Officers edit these TOML files by hand; an error that says only "invalid type" is useless.
//! Every problem names the file, the 1-based line and what is wrong, and loading collects all
//! problems of a file set before failing, so one `policy check` run shows everything to fix.

use std::fmt;

/// One problem in a rule file.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    /// File name as given to the loader (a path or an embedded file's name).
    pub file: String,
    /// 1-based line number; 0 when the problem is about the file as a whole.
    pub line: usize,
    /// What is wrong, in plain words.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}:{}: {}", self.file, self.line, self.message)
        }
    }
}

/// 1-based line of byte offset `offset` in `text`.
pub fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end].iter().filter(|&&b| b == b'\n').count() + 1
}

/// Turn a TOML syntax or schema error into a [`Problem`] with its line.
pub fn toml_problem(file: &str, text: &str, err: &toml::de::Error) -> Problem {
    let line = err.span().map_or(0, |s| line_of(text, s.start));
    Problem { file: file.to_owned(), line, message: err.message().trim().to_owned() }
}

/// Several problems, displayed one per line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problems(pub Vec<Problem>);

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

/// Loading a rule file (catalog, policy, users) failed; nothing was loaded, so a reload keeps
/// the previous set running.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// One or more files are invalid (file, line, what is wrong).
    #[error("{0}")]
    Invalid(Problems),
}

impl LoadError {
    /// The problems, one per line (an I/O error is one problem at line 0).
    pub fn problems(&self) -> Vec<Problem> {
        match self {
            LoadError::Io { path, source } => vec![Problem { file: path.clone(), line: 0, message: source.to_string() }],
            LoadError::Invalid(p) => p.0.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines() {
        assert_eq!(line_of("a\nb\nc", 0), 1);
        assert_eq!(line_of("a\nb\nc", 2), 2);
        assert_eq!(line_of("a\nb\nc", 4), 3);
        assert_eq!(line_of("a\nb\nc", 99), 3);
    }
}
