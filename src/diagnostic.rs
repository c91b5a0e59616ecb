//! Source-located problems, collected rather than thrown, so that one run
//! reports every mistake. Rendering (rustc style, via codespan-reporting)
//! happens only at the CLI edge through [`render`].

use std::path::{Path, PathBuf};

use serde::Serialize;

/// Index of a file in [`Sources`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileId(pub usize);

/// A byte range in one source file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Span {
    pub file: FileId,
    pub start: u32,
    pub end: u32,
}

impl Span {
    pub fn new(file: FileId, range: rnix::TextRange) -> Self {
        Span { file, start: range.start().into(), end: range.end().into() }
    }
}

/// Every file read during one run, kept for rendering and for line/column
/// lookups.
#[derive(Debug, Default)]
pub struct Sources {
    files: Vec<(PathBuf, String)>,
    /// Byte offsets where each line starts, per file, made on first use:
    /// a line lookup is a binary search, not a scan from the file's start
    /// (issue 11: that scan made 100k steps quadratic).
    lines: Vec<std::sync::OnceLock<Vec<usize>>>,
}

impl Sources {
    pub fn add(&mut self, path: impl Into<PathBuf>, text: impl Into<String>) -> FileId {
        self.files.push((path.into(), text.into()));
        self.lines.push(std::sync::OnceLock::new());
        FileId(self.files.len() - 1)
    }
    pub fn path(&self, id: FileId) -> &Path {
        &self.files[id.0].0
    }
    pub fn text(&self, id: FileId) -> &str {
        &self.files[id.0].1
    }
    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, id: FileId, offset: u32) -> (usize, usize) {
        let text = self.text(id);
        let offset = (offset as usize).min(text.len());
        let offset = floor_char_boundary(text, offset);
        let starts = self.lines[id.0]
            .get_or_init(|| std::iter::once(0).chain(text.match_indices('\n').map(|(i, _)| i + 1)).collect());
        let line = starts.partition_point(|&s| s <= offset);
        let line_start = starts[line - 1];
        let col = text[line_start..offset].chars().count() + 1;
        (line, col)
    }
    /// The 1-based line of `offset`, counted on from `from`, an offset of
    /// the same file on line `from_line` (0 and 1 for the start): a caller
    /// asking for lines in order (a script, step by step) reads the file
    /// once, without the table of line starts [`Sources::line_col`] builds.
    pub fn line_after(&self, id: FileId, from: usize, from_line: usize, offset: u32) -> usize {
        let bytes = self.text(id).as_bytes();
        let offset = (offset as usize).min(bytes.len());
        let (from, from_line) = if from <= offset { (from, from_line) } else { (0, 1) };
        from_line + memchr::memchr_iter(b'\n', &bytes[from..offset]).count()
    }
    pub fn len(&self) -> usize {
        self.files.len()
    }
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// One problem in the user's input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    /// Stable snake_case identifier, e.g. `unknown_step_key`.
    pub code: &'static str,
    pub message: String,
    /// Where it is; `None` for problems without a location (a missing file).
    pub span: Option<Span>,
    /// Text under the caret.
    pub label: Option<String>,
    /// Secondary locations, e.g. the first definition of a duplicate.
    pub secondary: Vec<(Span, String)>,
    /// "help: …" lines that say what to do.
    pub hints: Vec<String>,
}

impl Diagnostic {
    pub fn error(code: &'static str, span: Option<Span>, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            code,
            message: message.into(),
            span,
            label: None,
            secondary: Vec::new(),
            hints: Vec::new(),
        }
    }
    pub fn warning(code: &'static str, span: Option<Span>, message: impl Into<String>) -> Self {
        Diagnostic { severity: Severity::Warning, ..Self::error(code, span, message) }
    }
    pub fn with_label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hints.push(hint.into());
        self
    }
    pub fn with_secondary(mut self, span: Span, label: impl Into<String>) -> Self {
        self.secondary.push((span, label.into()));
        self
    }
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
    /// Plain data for `--format json` output.
    pub fn to_json(&self, sources: &Sources) -> serde_json::Value {
        let loc = self.span.map(|s| {
            let (line, column) = sources.line_col(s.file, s.start);
            serde_json::json!({
                "file": sources.path(s.file).display().to_string(),
                "line": line,
                "column": column,
            })
        });
        serde_json::json!({
            "severity": self.severity,
            "code": self.code,
            "message": self.message,
            "location": loc,
            "hints": self.hints,
        })
    }
}

/// True if any diagnostic is an error (generation must not proceed).
pub fn has_errors(diags: &[Diagnostic]) -> bool {
    diags.iter().any(Diagnostic::is_error)
}

/// Renders diagnostics the way rustc does: `error[code]: message`, then
/// `--> file:line:col`, the source line, a caret under the span and the hints.
/// `s` with every control character except newline and tab written as
/// `\u{…}`: names and values from a description or a flake (a key like
/// `"\e]0;title\a"`) must not drive the user's terminal.
pub fn escape_controls(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(is_unprintable) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if is_unprintable(c) {
            out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

fn is_unprintable(c: char) -> bool {
    c.is_control() && c != '\n' && c != '\t'
}

/// Source text for the snippets: control characters become `?` (one per
/// byte, so spans keep their offsets).
fn printable_source(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            let n = if is_unprintable(c) && c != '\r' { c.len_utf8() } else { 0 };
            std::iter::repeat_n('?', n).chain((n == 0).then_some(c))
        })
        .collect()
}

pub fn render(diags: &[Diagnostic], sources: &Sources, color: bool) -> String {
    use codespan_reporting::diagnostic as cs;
    use codespan_reporting::files::SimpleFiles;
    use codespan_reporting::term::{self, termcolor};

    let mut files = SimpleFiles::new();
    for i in 0..sources.len() {
        let id = FileId(i);
        let name = escape_controls(&sources.path(id).display().to_string()).into_owned();
        files.add(name, printable_source(sources.text(id)));
    }
    let mut buf = if color { termcolor::Buffer::ansi() } else { termcolor::Buffer::no_color() };
    // rustc's look (`-->`, `|`, `^`) rather than box-drawing characters:
    // familiar, and it survives terminals and logs without UTF-8.
    let config = term::Config { chars: term::Chars::ascii(), ..term::Config::default() };
    for d in diags {
        let mut out = match d.severity {
            Severity::Error => cs::Diagnostic::error(),
            Severity::Warning => cs::Diagnostic::warning(),
        }
        .with_code(d.code)
        .with_message(escape_controls(&d.message));
        let mut labels = Vec::new();
        if let Some(s) = d.span {
            labels.push(
                cs::Label::primary(s.file.0, s.start as usize..s.end as usize)
                    .with_message(escape_controls(d.label.as_deref().unwrap_or_default())),
            );
        }
        for (s, msg) in &d.secondary {
            labels.push(
                cs::Label::secondary(s.file.0, s.start as usize..s.end as usize)
                    .with_message(escape_controls(msg)),
            );
        }
        out = out.with_labels(labels);
        out = out.with_notes(d.hints.iter().map(|h| format!("help: {}", escape_controls(h))).collect());
        // Rendering into a memory buffer cannot fail for in-range spans; an
        // out-of-range span is a bug, but we still print the message.
        if term::emit_to_write_style(&mut buf, &config, &files, &out).is_err() {
            use std::io::Write;
            let _ = writeln!(buf, "error[{}]: {}", d.code, escape_controls(&d.message));
        }
    }
    String::from_utf8_lossy(buf.as_slice()).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counting lines on from an earlier offset gives `line_col`'s line,
    /// in order, backwards and past the end.
    #[test]
    fn lines_counted_on_are_line_cols_lines() {
        let mut sources = Sources::default();
        let id = sources.add("t.nix", "{\n  a = \"é\";\n\n  b = 1;\n}");
        let len = sources.text(id).len() as u32;
        let (mut from, mut line) = (0, 1);
        for offset in (0..=len + 2).chain([3, 0, len]) {
            let counted = sources.line_after(id, from, line, offset);
            assert_eq!(counted, sources.line_col(id, offset).0, "at {offset}");
            (from, line) = (offset as usize, counted);
        }
    }
}
