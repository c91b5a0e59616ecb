//! The terminal summary: per run, pass or fail, duration, and for a
//! failure its step, node, command and output. Control characters from the
//! reports (a guest's escape sequences) are shown as `\x1b`, never sent to
//! the terminal.

use std::fmt::Write;

use super::view::{FailureView, Overview};

/// Output lines shown per failure; the HTML report has all of them.
const MAX_OUTPUT_LINES: usize = 40;

pub fn render(o: &Overview) -> String {
    let mut out = String::new();
    for r in &o.runs {
        let word = if r.passed { "PASS" } else { "FAIL" };
        let _ =
            writeln!(out, "{word}  {}  ({})  {}  {}", clean(&r.name), clean(&r.label), r.duration, r.counts);
        if !r.passed && r.verdict != "failed" {
            let _ = writeln!(out, "      {}", r.verdict);
        }
        if let Some(e) = &r.error {
            let _ = writeln!(out, "      error: {}", clean(e));
        }
        for f in r.failure.iter().chain(&r.more_failures) {
            failure(&mut out, f);
        }
    }
    let _ = writeln!(out, "{}", o.headline);
    out
}

fn failure(out: &mut String, f: &FailureView) {
    let _ = writeln!(out, "      {}", clean(&f.title));
    let _ = writeln!(out, "        {}", clean(&f.message));
    if let Some(node) = &f.node {
        let _ = writeln!(out, "        node: {}", clean(node));
    }
    if let Some(c) = &f.command {
        let _ = writeln!(out, "        command: {}", clean(c));
    }
    if let Some(s) = &f.exit_status {
        let _ = writeln!(out, "        exit status: {s}");
    }
    if let Some(o) = &f.output {
        let note = f.output_note.map(|n| format!(" ({n})")).unwrap_or_default();
        let _ = writeln!(out, "        output{note}:");
        block(out, o);
    }
    for (title, text) in &f.details {
        let _ = writeln!(out, "        {}:", clean(title));
        block(out, text);
    }
    if let Some(c) = &f.console {
        let _ = writeln!(out, "        last console lines:");
        block(out, c);
    }
}

/// The last [`MAX_OUTPUT_LINES`] lines, indented.
fn block(out: &mut String, text: &str) {
    let lines: Vec<&str> = text.trim_end().lines().collect();
    let skip = lines.len().saturating_sub(MAX_OUTPUT_LINES);
    if skip > 0 {
        let _ = writeln!(out, "          … {skip} earlier line(s), see the HTML report");
    }
    for l in &lines[skip..] {
        let _ = writeln!(out, "          {}", clean(l));
    }
}

/// Escapes control characters (but tabs) as `\xNN`.
pub fn clean(s: &str) -> String {
    clean_keeping(s, &['\t'])
}

/// [`clean`] for multi-line text: newlines stay.
pub fn clean_block(s: &str) -> String {
    clean_keeping(s, &['\t', '\n'])
}

fn clean_keeping(s: &str, keep: &[char]) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            c if keep.contains(&c) => out.push(c),
            c if c.is_control() => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn control_characters_never_reach_the_terminal() {
        assert_eq!(super::clean("a\u{1b}[2Jb\r\u{7}\tc"), "a\\x1b[2Jb\\x0d\\x07\tc");
        assert_eq!(super::clean_block("a\nb\u{9b}c"), "a\nb\\x9bc");
    }
}
