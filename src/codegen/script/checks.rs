//! The output checks of a step's `expect` in Python: a boolean condition,
//! a message (a `%`-format) and its argument for each, written in place.

use std::fmt::{self, Display};

use super::out::{Out, PyNum, PyStr, display};
use super::{Names, ScriptGen};
use crate::spec::Expect;
use crate::spec::computed::is_placeholder;

/// One output check of `expect`.
#[derive(Clone, Copy)]
enum Check<'e> {
    Contains(&'e str),
    NotContains(&'e str),
    Equals(&'e str),
    Matches(&'e str),
    Json(&'e serde_json::Value),
}

/// The checks of `expect`, in the order they are written.
fn all(expect: &Expect) -> impl Iterator<Item = Check<'_>> {
    let contains = expect.contains.iter().map(|s| Check::Contains(s));
    let not_contains = expect.not_contains.iter().map(|s| Check::NotContains(s));
    let equals = expect.equals.as_deref().map(Check::Equals);
    let matches = expect.matches.as_deref().map(Check::Matches);
    let json = expect.json.as_ref().map(Check::Json);
    contains.chain(not_contains).chain(equals).chain(matches).chain(json)
}

/// Whether `expect` has no output checks (the exit code aside).
pub fn none(expect: &Expect) -> bool {
    all(expect).next().is_none()
}

impl<'e> Check<'e> {
    /// The Python boolean expression for the check of `var`.
    fn condition<'a>(self, n: &'a Names, var: &'a str) -> impl Display + 'a
    where
        'e: 'a,
    {
        display(move |f| match self {
            Check::Contains(needle) => write!(f, "{} in {var}", PyStr(needle)),
            Check::NotContains(needle) => write!(f, "{} not in {var}", PyStr(needle)),
            Check::Equals(_) => write!(f, "{var}.rstrip(\"\\n\") == {}", self.arg(n)),
            Check::Matches(regex) => write!(f, "{}.search({}, {var}) is not None", n.re, PyStr(regex)),
            Check::Json(_) => write!(f, "{}({}, {var})", n.expect_json, self.arg(n)),
        })
    }

    /// The message of a failed check (a `%`-format of [`Check::arg`]).
    fn message<'a>(self, what: &'a str) -> impl Display + 'a
    where
        'e: 'a,
    {
        display(move |f| match self {
            Check::Contains(_) => write!(f, "expected the {what} to contain %r"),
            Check::NotContains(_) => write!(f, "expected the {what} not to contain %r"),
            Check::Equals(_) => write!(f, "expected the {what} to be %r"),
            Check::Matches(_) => write!(f, "expected the {what} to match %r"),
            Check::Json(_) => write!(f, "expected the {what} as JSON to contain %r"),
        })
    }

    /// The expected value, as a Python expression.
    fn arg<'a>(self, n: &'a Names) -> impl Display + 'a
    where
        'e: 'a,
    {
        display(move |f| match self {
            Check::Contains(s) | Check::NotContains(s) | Check::Matches(s) => PyStr(s).fmt(f),
            Check::Equals(s) => stripped(f, s),
            Check::Json(want) => {
                let text = serde_json::to_string(want).unwrap_or_default();
                write!(f, "{}.loads({})", n.json, PyStr(&text))
            }
        })
    }
}

/// `s` without trailing newlines, as a Python expression (computed values
/// are stripped when the script runs).
fn stripped(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    if is_placeholder(s) {
        write!(f, "{}.rstrip(\"\\n\")", PyStr(s))
    } else {
        PyStr(s.trim_end_matches('\n')).fmt(f)
    }
}

/// `{status} == {code}` and every output check of `var`, joined by `and`.
pub fn conditions<'a>(code: PyNum<i32>, expect: &'a Expect, n: &'a Names, var: &'a str) -> impl Display + 'a {
    display(move |f| {
        write!(f, "{} == {code}", n.status)?;
        for check in all(expect) {
            write!(f, " and {}", check.condition(n, var))?;
        }
        Ok(())
    })
}

impl ScriptGen<'_> {
    /// Notes the imports and helpers the checks of `expect` use.
    pub(super) fn use_checks(&mut self, expect: &Expect) {
        if expect.matches.is_some() {
            self.imports.insert("re");
        }
        if expect.json.is_some() {
            self.json_helpers = true;
            self.imports.insert("json");
        }
    }

    /// The output checks as asserts naming the step (`loc`). One check is
    /// one `assert`; several are all evaluated and every failure is reported.
    pub(super) fn output_asserts(
        &mut self,
        expect: &Expect,
        var: &str,
        what: &str,
        loc: PyStr<'_>,
        out: &mut Out,
    ) {
        self.use_checks(expect);
        let n = self.names.clone();
        let mut checks = all(expect);
        let (Some(first), second) = (checks.next(), checks.next()) else { return };
        if second.is_none() {
            let (cond, message, arg) = (first.condition(&n, var), first.message(what), first.arg(&n));
            out.line(format_args!("assert {cond}, \"%s: {message}, got %r\" % ({loc}, {arg}, {var})"));
            return;
        }
        let failures = &n.failures;
        // Declared with its type once (mypy refuses a second annotation).
        if self.failures_declared {
            out.line(format_args!("{failures} = []"));
        } else {
            self.failures_declared = true;
            out.line(format_args!("{failures}: list[str] = []"));
        }
        for check in all(expect) {
            out.line(format_args!("if not ({}):", check.condition(&n, var)));
            out.indented(|out| {
                out.line(format_args!(
                    "{failures}.append(\"{}\" % ({},))",
                    check.message(what),
                    check.arg(&n)
                ))
            });
        }
        out.line(format_args!(
            "assert not {failures}, \"%s: %s; got %r\" % ({loc}, \"; \".join({failures}), {var})"
        ));
    }
}
