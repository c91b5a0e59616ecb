//! The script as it is written: lines straight into one growing buffer at
//! a block level, and the Python pieces formatted in place (`{}`) instead
//! of each being a `String` of its own (a `format!` per line into a
//! `Vec<String>`, joined at the end, was most of a cold `check`'s script
//! rendering).

use std::fmt::{self, Display, Write as _};

use crate::spec::computed::{Num, placeholder};

pub use super::super::escape::{Comment, PyStr};

/// Indentation of one Python block level.
const PY_INDENT: &str = "    ";

/// Lines of Python, each ended by `\n`, indented by the block level they
/// are written at; an empty line stays empty.
#[derive(Default)]
pub struct Out {
    text: String,
    level: usize,
}

impl Out {
    /// One line at the current level.
    pub fn line(&mut self, args: fmt::Arguments<'_>) {
        self.write_line(args, false);
    }

    /// One line without its trailing whitespace.
    pub fn line_trimmed(&mut self, args: fmt::Arguments<'_>) {
        self.write_line(args, true);
    }

    fn write_line(&mut self, args: fmt::Arguments<'_>, trim: bool) {
        let start = self.text.len();
        for _ in 0..self.level {
            self.text.push_str(PY_INDENT);
        }
        let body = self.text.len();
        // Writing to a `String` cannot fail.
        let _ = self.text.write_fmt(args);
        if trim {
            let kept = self.text[body..].trim_end().len();
            self.text.truncate(body + kept);
        }
        if self.text.len() == body {
            self.text.truncate(start);
        }
        self.text.push('\n');
    }

    /// An empty line.
    pub fn blank(&mut self) {
        self.text.push('\n');
    }

    /// Lines written by `body` one block level deeper.
    pub fn indented<R>(&mut self, body: impl FnOnce(&mut Out) -> R) -> R {
        self.level += 1;
        let result = body(self);
        self.level -= 1;
        result
    }

    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    /// The lines of `other` after these (at the level they were written at).
    pub fn append(&mut self, other: &Out) {
        self.text.push_str(&other.text);
    }

    pub fn reserve(&mut self, additional: usize) {
        self.text.reserve(additional);
    }

    pub fn len(&self) -> usize {
        self.text.len()
    }

    pub fn into_string(self) -> String {
        self.text
    }
}

/// `Display` by a closure, for a piece that is written where it is used
/// (std's `fmt::from_fn` is newer than the crate's minimum Rust).
pub fn display<F: Fn(&mut fmt::Formatter<'_>) -> fmt::Result>(write: F) -> impl Display {
    Fmt(write)
}

struct Fmt<F>(F);

impl<F: Fn(&mut fmt::Formatter<'_>) -> fmt::Result> Display for Fmt<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        (self.0)(f)
    }
}

/// A number as a Python literal: the literal written by the function; a
/// computed one as its quoted placeholder, which `codegen::model` replaces
/// by the value Nix computes (`${builtins.toJSON …}`, a valid Python
/// number).
#[derive(Clone, Copy)]
pub struct PyNum<T>(pub Num<T>, pub fn(&mut fmt::Formatter<'_>, T) -> fmt::Result);

impl<T: Copy> Display for PyNum<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Num::Lit(v) => (self.1)(f, v),
            Num::Computed(i) => PyStr(&placeholder(i)).fmt(f),
        }
    }
}

/// An integer literal.
pub fn int<T: Display>(f: &mut fmt::Formatter<'_>, n: T) -> fmt::Result {
    write!(f, "{n}")
}

/// Timeouts for the stock driver, whose type stubs declare `int`: rounded
/// up to whole seconds.
pub fn seconds(f: &mut fmt::Formatter<'_>, seconds: f64) -> fmt::Result {
    let whole = seconds.ceil();
    if whole.is_finite() && whole >= 0.0 { write!(f, "{}", whole as u64) } else { f.write_str("0") }
}

/// A float literal (integral values without a decimal point).
pub fn float(f: &mut fmt::Formatter<'_>, value: f64) -> fmt::Result {
    if value.is_finite() { write!(f, "{value}") } else { f.write_str("0") }
}

/// A Python expression for a string: a literal of the text, or code
/// already written (a placeholder joined to text, `shlex.quote(…)`).
pub enum PyExpr<'a> {
    Literal(&'a str),
    Code(String),
}

impl Display for PyExpr<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PyExpr::Literal(s) => PyStr(s).fmt(f),
            PyExpr::Code(code) => f.write_str(code),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_indented_by_level_but_empty_ones_stay_empty() {
        let mut out = Out::default();
        out.line(format_args!("a"));
        out.indented(|out| {
            out.line(format_args!("b{}", 1));
            out.line(format_args!(""));
            out.line_trimmed(format_args!("c  "));
            out.line_trimmed(format_args!("   "));
            out.blank();
        });
        assert_eq!(out.into_string(), "a\n    b1\n\n    c\n\n\n");
    }

    #[test]
    fn numbers() {
        assert_eq!(PyNum(Num::Lit(2.5), seconds).to_string(), "3");
        assert_eq!(PyNum(Num::Lit(-1.0), seconds).to_string(), "0");
        assert_eq!(PyNum(Num::Lit(1.5), float).to_string(), "1.5");
        assert_eq!(PyNum(Num::Lit(f64::NAN), float).to_string(), "0");
        assert_eq!(PyNum(Num::<u16>::Computed(3), int).to_string(), PyStr(&placeholder(3)).to_string());
    }
}
