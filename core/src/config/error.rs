//! Configuration errors: which file and line, which key, what is wrong, and what to
//! write instead.

use std::fmt;
use std::path::{Path, PathBuf};

/// One problem in a configuration file.
///
/// Displays as `file:line:column: key: message; hint`, e.g.
/// `adapters.toml:12:1: adapter "registration".ingest.workers: must be at least 1; write
/// e.g. workers = 10`. Parts that are not known are left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file, as it was named when loading.
    pub file: PathBuf,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column (in characters), when known.
    pub column: Option<usize>,
    /// Which setting: a dotted path such as `adapter "registration".ingest.workers` or
    /// `adapter "registration": sink "file": path`, or a Choria key. Empty for the file
    /// as a whole.
    pub key: String,
    /// What is wrong.
    pub message: String,
    /// What to write instead, when there is something to say.
    pub hint: Option<String>,
}

impl ConfigError {
    /// An error about `key` in `file`, with no position.
    pub fn new(
        file: impl Into<PathBuf>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        ConfigError {
            file: file.into(),
            line: None,
            column: None,
            key: key.into(),
            message: message.into(),
            hint: None,
        }
    }

    /// An error about `key`, written at `location`.
    pub fn at(location: &Location, key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            file: location.file.clone(),
            line: Some(location.line),
            column: Some(location.column),
            key: key.into(),
            message: message.into(),
            hint: None,
        }
    }

    /// The same error with a hint.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// The same error with the hint only when there is one.
    pub fn with_hint_opt(mut self, hint: Option<String>) -> Self {
        self.hint = hint;
        self
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        f.write_str(": ")?;
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "; {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Every problem found in one configuration, in file order. Displays one per line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    /// Number of errors.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The errors, in order.
    pub fn iter(&self) -> std::slice::Iter<'_, ConfigError> {
        self.0.iter()
    }

    /// Adds one.
    pub fn push(&mut self, error: ConfigError) {
        self.0.push(error);
    }

    /// Sorts by file, then line and column; errors without a line come first. Stable.
    pub fn sort(&mut self) {
        self.0
            .sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
    }

    /// `Ok(value)` when there are no errors, else the errors, sorted.
    pub fn into_result<T>(mut self, value: T) -> Result<T, ConfigErrors> {
        if self.is_empty() {
            Ok(value)
        } else {
            self.sort();
            Err(self)
        }
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl From<ConfigError> for ConfigErrors {
    fn from(e: ConfigError) -> Self {
        ConfigErrors(vec![e])
    }
}

impl From<Vec<ConfigError>> for ConfigErrors {
    fn from(errors: Vec<ConfigError>) -> Self {
        ConfigErrors(errors)
    }
}

impl IntoIterator for ConfigErrors {
    type Item = ConfigError;
    type IntoIter = std::vec::IntoIter<ConfigError>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a ConfigErrors {
    type Item = &'a ConfigError;
    type IntoIter = std::slice::Iter<'a, ConfigError>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl Extend<ConfigError> for ConfigErrors {
    fn extend<I: IntoIterator<Item = ConfigError>>(&mut self, iter: I) {
        self.0.extend(iter);
    }
}

/// Where something is written: file, 1-based line and column.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Location {
    /// The file, as it was named when loading.
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
}

impl Location {
    /// A location.
    pub fn new(file: impl Into<PathBuf>, line: usize, column: usize) -> Self {
        Location {
            file: file.into(),
            line,
            column,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

/// Turns byte offsets into 1-based lines and columns.
#[derive(Debug, Clone)]
pub(crate) struct LineIndex<'a> {
    file: &'a Path,
    text: &'a str,
    starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    pub(crate) fn new(file: &'a Path, text: &'a str) -> Self {
        let starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        LineIndex { file, text, starts }
    }

    /// The location of byte `offset` (clamped to the text).
    pub(crate) fn location(&self, offset: usize) -> Location {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let line = self.starts.partition_point(|&s| s <= offset).max(1);
        let start = self.starts[line - 1];
        let column = self.text[start..offset].chars().count() + 1;
        Location::new(self.file, line, column)
    }
}

/// The candidate closest to `word`, when one is close enough to be a likely typo.
pub fn did_you_mean<'a, I>(word: &str, candidates: I) -> Option<&'a str>
where
    I: IntoIterator<Item = &'a str>,
{
    let word_lower = word.to_ascii_lowercase();
    candidates
        .into_iter()
        .map(|c| {
            let score =
                strsim::normalized_damerau_levenshtein(&word_lower, &c.to_ascii_lowercase());
            (score, c)
        })
        .filter(|(score, _)| *score >= 0.7)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// What to say about an unknown `word`: `did you mean `x`?` when one candidate is close,
/// else the list of what is known (`expected one of `a`, `b``).
pub fn unknown_hint<'a, I>(word: &str, candidates: I) -> String
where
    I: IntoIterator<Item = &'a str>,
    I::IntoIter: Clone,
{
    let candidates = candidates.into_iter();
    match did_you_mean(word, candidates.clone()) {
        Some(best) => format!("did you mean `{best}`?"),
        None => {
            let all: Vec<String> = candidates.map(|c| format!("`{c}`")).collect();
            match all.len() {
                0 => "nothing is expected here".to_string(),
                1 => format!("expected {}", all[0]),
                _ => format!("expected one of {}", all.join(", ")),
            }
        }
    }
}

/// What a serde error message becomes in a [`ConfigError`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SerdeMessage {
    pub(crate) message: String,
    pub(crate) hint: Option<String>,
    /// The error is about a key that should not be there (so the error's key is the
    /// table that holds it).
    pub(crate) unknown_key: bool,
}

/// Rewrites serde's messages ("unknown field `x`, expected one of ...", "missing field
/// `x`", "unknown variant ...") into the words config users see.
pub(crate) fn rewrite_serde_message(message: &str) -> SerdeMessage {
    let plain = |message: &str| {
        let (message, hint) = match message.split_once("; ") {
            Some((m, h)) => (m.to_string(), Some(h.to_string())),
            None => (message.to_string(), None),
        };
        SerdeMessage {
            message,
            hint,
            unknown_key: false,
        }
    };
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let Some((field, expected)) = rest.split_once('`') else {
            return plain(message);
        };
        let known = backticked(expected);
        let hint = if known.is_empty() {
            "this table takes no keys".to_string()
        } else {
            unknown_hint(field, known.iter().copied())
        };
        return SerdeMessage {
            message: format!("unknown key `{field}`"),
            hint: Some(hint),
            unknown_key: true,
        };
    }
    if let Some(rest) = message.strip_prefix("unknown variant `") {
        let Some((value, expected)) = rest.split_once('`') else {
            return plain(message);
        };
        let known = backticked(expected);
        return SerdeMessage {
            message: format!("unknown value `{value}`"),
            hint: Some(unknown_hint(value, known.iter().copied())),
            unknown_key: false,
        };
    }
    if let Some(rest) = message.strip_prefix("missing field `") {
        let field = rest.trim_end_matches('`');
        return SerdeMessage {
            message: format!("missing required key `{field}`"),
            hint: None,
            unknown_key: false,
        };
    }
    if message == "invalid socket address syntax" {
        return SerdeMessage {
            message: "not a socket address".to_string(),
            hint: Some("write e.g. \"127.0.0.1:8222\" or \"[::1]:8222\"".to_string()),
            unknown_key: false,
        };
    }
    plain(message)
}

/// The words between backticks in `text`.
fn backticked(text: &str) -> Vec<&str> {
    text.split('`').skip(1).step_by(2).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_leaves_out_what_is_unknown() {
        let mut e = ConfigError::new("adapters.toml", "", "cannot read");
        assert_eq!(e.to_string(), "adapters.toml: cannot read");
        e.line = Some(12);
        e.column = Some(3);
        e.key = "adapter \"registration\".ingest.workers".into();
        e.message = "must be at least 1".into();
        let e = e.with_hint("write e.g. workers = 10");
        assert_eq!(
            e.to_string(),
            "adapters.toml:12:3: adapter \"registration\".ingest.workers: must be at least 1; \
             write e.g. workers = 10"
        );
    }

    #[test]
    fn line_index_counts_lines_and_characters() {
        let text = "a = 1\nbé = 2\n\nc";
        let idx = LineIndex::new(Path::new("f"), text);
        assert_eq!(idx.location(0), Location::new("f", 1, 1));
        assert_eq!(idx.location(6), Location::new("f", 2, 1));
        assert_eq!(idx.location(9), Location::new("f", 2, 3));
        assert_eq!(idx.location(15), Location::new("f", 4, 1));
        assert_eq!(idx.location(999), Location::new("f", 4, 2));
    }

    #[test]
    fn suggestions() {
        let keys = ["servers", "subject", "workers"];
        assert_eq!(did_you_mean("subjet", keys), Some("subject"));
        assert_eq!(did_you_mean("worker", keys), Some("workers"));
        assert_eq!(did_you_mean("zzz", keys), None);
        assert_eq!(did_you_mean("htp", ["http", "adapter"]), Some("http"));
        assert_eq!(did_you_mean("nast", ["nats", "jetstream"]), Some("nats"));
        let choria = ["stream.topic", "stream.workers", "stream.servers"];
        assert_eq!(did_you_mean("stream.topik", choria), Some("stream.topic"));
        assert_eq!(did_you_mean("stream.clusterid", choria), None);
        assert_eq!(unknown_hint("subjet", keys), "did you mean `subject`?");
        assert_eq!(
            unknown_hint("zzz", keys),
            "expected one of `servers`, `subject`, `workers`"
        );
    }

    #[test]
    fn serde_messages() {
        let m = rewrite_serde_message("unknown field `subjet`, expected `subject` or `workers`");
        assert_eq!(m.message, "unknown key `subjet`");
        assert_eq!(m.hint.as_deref(), Some("did you mean `subject`?"));
        assert!(m.unknown_key);
        let m = rewrite_serde_message("unknown field `x`, there are no fields");
        assert_eq!(m.hint.as_deref(), Some("this table takes no keys"));
        let m = rewrite_serde_message(
            "unknown variant `requst`, expected one of `request`, `reply`, `any`",
        );
        assert_eq!(m.message, "unknown value `requst`");
        assert_eq!(m.hint.as_deref(), Some("did you mean `request`?"));
        let m = rewrite_serde_message("missing field `subject`");
        assert_eq!(m.message, "missing required key `subject`");
        let m = rewrite_serde_message("\"x\" is not a duration (y); write e.g. \"30s\"");
        assert_eq!(m.message, "\"x\" is not a duration (y)");
        assert_eq!(m.hint.as_deref(), Some("write e.g. \"30s\""));
    }
}
