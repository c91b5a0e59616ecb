//! The Python side of `import`: parses a testScript with rustpython-parser
//! and maps its statements to description steps through [`METHODS`].
//!
//! The rule is "never silently wrong": a statement becomes steps only when
//! the steps make the same Machine calls with the same arguments (checked
//! afterwards by the recording fake Machine in `benches/import/`); anything
//! else becomes an [`Item::Todo`] carrying the original lines and the reason.

use std::collections::{BTreeMap, BTreeSet};

use rustpython_parser::Parse;
use rustpython_parser::ast::{self, Constant, Expr, Ranged, Stmt};

use super::nix::{PLACEHOLDER_PREFIX, ScriptSource};
use crate::spec::names::pythonize;

/// A Nix value of a converted step.
#[derive(Clone, Debug, PartialEq)]
pub enum NixValue {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    /// A list (`expect.contains = [ … ]`).
    List(Vec<NixValue>),
}

/// One step of the converted description, or a statement left as it was.
#[derive(Clone, Debug, PartialEq)]
pub enum Item {
    Step {
        node: Option<String>,
        key: &'static str,
        value: NixValue,
        /// Further keys (`user`, `addr`, `timeout`, `expect.contains` …).
        extra: Vec<(String, NixValue)>,
        line: usize,
    },
    Subtest {
        title: String,
        items: Vec<Item>,
        line: usize,
    },
    Todo(Leftover),
    /// A statement kept as a `python` step (with `--python-steps`): still a
    /// leftover, reported, but the description runs it.
    Python {
        code: String,
        /// The names the code reads (to keep the definitions it needs).
        loads: BTreeSet<String>,
        leftover: Leftover,
    },
    /// A definition the converter consumed (an `import`, an inlined `def`):
    /// written as a `python` step only when a kept statement uses a name it
    /// binds.
    Def {
        names: BTreeSet<String>,
        loads: BTreeSet<String>,
        code: String,
    },
    /// A comment of the script (`# …`), kept above the step it preceded.
    Comment(String),
}

/// A statement that was not converted: where, what, why, and its lines.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Leftover {
    /// File line of the statement's first line.
    pub line: usize,
    /// What it is (`Machine.send_keys`, `if statement`, …).
    pub construct: String,
    pub why: String,
    /// The statement's original Python lines.
    pub source: String,
    /// Kept as a `python` step (`--python-steps`) rather than a comment.
    pub python: bool,
}

/// Something the converter dropped on purpose, which changes no Machine
/// call (an `import re`, the leading `start_all()`), said once.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Note {
    pub line: usize,
    pub message: String,
}

/// How one argument of a Machine method maps onto the step.
#[derive(Clone, Copy, Debug)]
enum Role {
    /// The action key's value.
    Main(Kind),
    /// Another key of the step.
    Extra(&'static str, Kind),
    /// The step's `timeout`.
    Timeout,
    /// A parameter no step key expresses: the call stays a leftover when it
    /// is given.
    Unsupported,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Str,
    Int,
}

/// A Machine method that has a step. `params` are the method's parameters
/// in the stock driver's order (nixos/lib/test-driver/src/test_driver/machine,
/// read at NixOS/nixpkgs master via the search tools), so positional and
/// keyword arguments map alike. To add a step kind, add a row here.
struct Method {
    name: &'static str,
    key: &'static str,
    params: &'static [(&'static str, Role)],
    /// `succeed("a", "b")` runs each command in turn: one step per command.
    variadic: bool,
}

const METHODS: &[Method] = &[
    Method {
        name: "wait_for_unit",
        key: "waitForUnit",
        params: &[
            ("unit", Role::Main(Kind::Str)),
            ("user", Role::Extra("user", Kind::Str)),
            ("timeout", Role::Timeout),
        ],
        variadic: false,
    },
    Method {
        name: "wait_for_open_port",
        key: "waitForOpenPort",
        params: &[
            ("port", Role::Main(Kind::Int)),
            ("addr", Role::Extra("addr", Kind::Str)),
            ("timeout", Role::Timeout),
        ],
        variadic: false,
    },
    Method {
        name: "wait_for_closed_port",
        key: "waitForClosedPort",
        params: &[
            ("port", Role::Main(Kind::Int)),
            ("addr", Role::Extra("addr", Kind::Str)),
            ("timeout", Role::Timeout),
        ],
        variadic: false,
    },
    Method {
        name: "wait_for_file",
        key: "waitForFile",
        params: &[("filename", Role::Main(Kind::Str)), ("timeout", Role::Timeout)],
        variadic: false,
    },
    Method {
        name: "wait_for_console_text",
        key: "waitForConsoleText",
        params: &[("regex", Role::Main(Kind::Str)), ("timeout", Role::Timeout)],
        variadic: false,
    },
    Method {
        name: "succeed",
        key: "succeed",
        params: &[("commands", Role::Main(Kind::Str)), ("timeout", Role::Timeout)],
        variadic: true,
    },
    Method {
        name: "fail",
        key: "fail",
        params: &[("commands", Role::Main(Kind::Str)), ("timeout", Role::Timeout)],
        variadic: true,
    },
    Method {
        name: "wait_until_succeeds",
        key: "waitUntilSucceeds",
        params: &[("command", Role::Main(Kind::Str)), ("timeout", Role::Timeout)],
        variadic: false,
    },
    Method {
        name: "wait_until_fails",
        key: "waitUntilFails",
        params: &[("command", Role::Main(Kind::Str)), ("timeout", Role::Timeout)],
        variadic: false,
    },
    Method {
        name: "copy_from_vm",
        key: "copyFromVm",
        params: &[("source", Role::Main(Kind::Str)), ("target_dir", Role::Extra("targetDir", Kind::Str))],
        variadic: false,
    },
    Method {
        name: "screenshot",
        key: "screenshot",
        params: &[("filename", Role::Main(Kind::Str))],
        variadic: false,
    },
    // The display and terminal (send_key's `delay`/`log` have no step key:
    // such a call stays Python).
    Method { name: "send_key", key: "sendKeys", params: &[("key", Role::Main(Kind::Str))], variadic: false },
    Method {
        name: "send_chars",
        key: "sendChars",
        params: &[("chars", Role::Main(Kind::Str))],
        variadic: false,
    },
    Method {
        name: "wait_until_tty_matches",
        key: "waitUntilTtyMatches",
        params: &[
            ("tty", Role::Extra("tty", Kind::Int)),
            ("regexp", Role::Main(Kind::Str)),
            ("timeout", Role::Timeout),
        ],
        variadic: false,
    },
    Method {
        name: "dump_tty_contents",
        key: "dumpTtyContents",
        params: &[("tty", Role::Main(Kind::Int))],
        variadic: false,
    },
    Method {
        name: "wait_for_text",
        key: "waitForText",
        params: &[("regex", Role::Main(Kind::Str)), ("timeout", Role::Timeout)],
        variadic: false,
    },
    Method { name: "wait_for_x", key: "waitForX", params: &[("timeout", Role::Timeout)], variadic: false },
    Method {
        name: "wait_for_window",
        key: "waitForWindow",
        params: &[("regexp", Role::Main(Kind::Str)), ("timeout", Role::Timeout)],
        variadic: false,
    },
    // `execute` as a statement: any exit status passes, as in the stock driver.
    Method {
        name: "execute",
        key: "execute",
        params: &[
            ("command", Role::Main(Kind::Str)),
            ("check_return", Role::Unsupported),
            ("check_output", Role::Unsupported),
            ("timeout", Role::Timeout),
        ],
        variadic: false,
    },
    // systemd: the stock methods return `(status, output)` unchecked, as the
    // steps do; a `user` reaches the user's manager.
    Method {
        name: "systemctl",
        key: "systemctl",
        params: &[("q", Role::Main(Kind::Str)), ("user", Role::Extra("user", Kind::Str))],
        variadic: false,
    },
    Method {
        name: "start_job",
        key: "startJob",
        params: &[("jobname", Role::Main(Kind::Str)), ("user", Role::Extra("user", Kind::Str))],
        variadic: false,
    },
    Method {
        name: "stop_job",
        key: "stopJob",
        params: &[("jobname", Role::Main(Kind::Str)), ("user", Role::Extra("user", Kind::Str))],
        variadic: false,
    },
    Method {
        name: "require_unit_state",
        key: "requireUnitState",
        params: &[("unit", Role::Main(Kind::Str)), ("require_state", Role::Extra("state", Kind::Str))],
        variadic: false,
    },
    Method {
        name: "copy_from_host",
        key: "copyFromHost",
        params: &[("source", Role::Main(Kind::Str)), ("target", Role::Extra("target", Kind::Str))],
        variadic: false,
    },
    Method {
        name: "forward_port",
        key: "forwardPort",
        params: &[("host_port", Role::Main(Kind::Int)), ("guest_port", Role::Extra("guestPort", Kind::Int))],
        variadic: false,
    },
    Method {
        name: "wait_for_open_unix_socket",
        key: "waitForOpenUnixSocket",
        params: &[
            ("addr", Role::Main(Kind::Str)),
            ("is_datagram", Role::Unsupported),
            ("timeout", Role::Timeout),
        ],
        variadic: false,
    },
    Method { name: "wait_for_shutdown", key: "waitForShutdown", params: &[], variadic: false },
    Method { name: "shutdown", key: "shutdown", params: &[], variadic: false },
    Method { name: "crash", key: "crash", params: &[], variadic: false },
    Method { name: "reboot", key: "reboot", params: &[], variadic: false },
    Method { name: "block", key: "block", params: &[], variadic: false },
    Method { name: "unblock", key: "unblock", params: &[], variadic: false },
];

/// The largest testScript read, and the deepest bracket nesting: the
/// parser and the walk below recurse on the tree.
pub const MAX_SCRIPT_BYTES: usize = 1 << 20;
pub const MAX_NESTING: usize = 100;

/// A Python value the converter can compute statically.
#[derive(Clone, Debug, PartialEq)]
enum PyValue {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

/// What converting a script produced.
#[derive(Debug, Default)]
pub struct Converted {
    pub items: Vec<Item>,
    pub notes: Vec<Note>,
}

/// A testScript that could not be read at all.
#[derive(Debug)]
pub struct ScriptError {
    pub line: usize,
    pub message: String,
}

/// Converts a decoded testScript. `nodes` are the test's node names;
/// `interpolations[i]` says whether `${…}` number `i` can be carried into a
/// step as a Nix value (and why not).
/// With `python_steps`, a statement that cannot be converted is kept as a
/// `python` step when its lines can be moved there unchanged.
pub fn convert(
    script: &ScriptSource,
    nodes: &[String],
    interpolations: &BTreeMap<usize, Result<(), String>>,
    python_steps: bool,
) -> Result<Converted, ScriptError> {
    if script.text.len() > MAX_SCRIPT_BYTES {
        return Err(ScriptError {
            line: script.first_line,
            message: format!("the testScript is larger than {MAX_SCRIPT_BYTES} bytes"),
        });
    }
    if let Some(offset) = too_deep(&script.text) {
        return Err(ScriptError {
            line: script.file_line(line_at(&script.text, offset)),
            message: format!("brackets are nested more than {MAX_NESTING} levels deep"),
        });
    }
    let suite = ast::Suite::parse(&script.text, "<testScript>").map_err(|e| ScriptError {
        line: script.file_line(line_at(&script.text, u32::from(e.offset) as usize)),
        message: format!("the testScript is not valid Python: {}", e.error),
    })?;
    let mut by_python: BTreeMap<String, String> = nodes.iter().map(|n| (pythonize(n), n.clone())).collect();
    // The stock driver also names the only node of a test `machine`.
    if let [only] = nodes
        && !by_python.contains_key("machine")
    {
        by_python.insert("machine".into(), only.clone());
    }
    let mut loads = Vec::new();
    for stmt in &suite {
        collect_loads_stmt(stmt, &mut loads);
    }
    let mut stores = BTreeMap::new();
    for stmt in &suite {
        collect_stores(stmt, &mut stores);
    }
    let mut conv = Converter {
        script,
        nodes: by_python,
        single: nodes.len() == 1,
        loads,
        env: BTreeMap::new(),
        called: false,
        down: BTreeSet::new(),
        notes: Vec::new(),
        stores,
        globals: BTreeMap::new(),
        defs: BTreeMap::new(),
        frames: 0,
        interpolations,
        python_steps,
        captures: BTreeMap::new(),
        loops: 0,
    };
    let items = conv.block(&suite, 0, 0);
    Ok(Converted { items, notes: conv.notes })
}

/// 1-based line of a byte offset in the script.
fn line_at(text: &str, offset: usize) -> usize {
    text.get(..offset.min(text.len())).map_or(1, |t| t.matches('\n').count() + 1)
}

/// The offset where bracket nesting first exceeds [`MAX_NESTING`].
fn too_deep(text: &str) -> Option<usize> {
    let mut depth = 0usize;
    for (i, c) in text.char_indices() {
        match c {
            '(' | '[' | '{' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Some(i);
                }
            }
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

struct Converter<'a> {
    script: &'a ScriptSource,
    /// Python variable → node name.
    nodes: BTreeMap<String, String>,
    single: bool,
    /// Every variable read in the script, with its offset.
    loads: Vec<(String, usize)>,
    /// Loop variables bound while unrolling.
    env: BTreeMap<String, PyValue>,
    /// Whether a Machine call was converted already.
    called: bool,
    /// Nodes shut down or crashed (a `start` then restarts them).
    down: BTreeSet<String>,
    notes: Vec<Note>,
    /// How often each name is assigned anywhere in the script.
    stores: BTreeMap<String, usize>,
    /// Module-level names bound to values (constants, loop variables):
    /// what an inlined function body sees besides its parameters.
    globals: BTreeMap<String, PyValue>,
    /// Module-level functions that can be inlined at their calls.
    defs: BTreeMap<String, ast::StmtFunctionDef>,
    /// How deep inlining is (0: module level).
    frames: usize,
    /// Which `${…}` may be carried into steps as Nix values.
    interpolations: &'a BTreeMap<usize, Result<(), String>>,
    /// Keep what cannot be converted as `python` steps.
    python_steps: bool,
    /// Python variables holding a captured output → the capture's name.
    captures: BTreeMap<String, String>,
    /// How many unrolled loops the converter is inside.
    loops: usize,
}

/// What a captured output must look like for `$NAME` in a command to be the
/// same as the original's pasted (and stripped) text: characters the shell
/// gives no meaning (no space, quote, `$`, `*`, …), then only newlines,
/// which both `.strip()` and a capture remove. The same decision under
/// Python's `re` and Rust's `regex`. The capturing step checks it
/// (`expect.matches`), so a value where the two would differ fails the test
/// instead of running something else.
pub const PLAIN_CAPTURE: &str = "^[A-Za-z0-9._/:@%+=,~-]*\\n*$";

/// Marks a captured output inside a computed string (private-use
/// characters, never in a step: [`shell_captures`] replaces them).
const CAPTURE_OPEN: char = '\u{E010}';
const CAPTURE_CLOSE: char = '\u{E011}';

/// A command holding captured outputs with each written as `${NAME}`;
/// refused where the shell would not expand it as the original pasted it
/// (inside single quotes, after a backslash).
fn shell_captures(command: &str) -> Result<String, String> {
    let (mut out, mut single, mut double, mut escaped) = (String::new(), false, false, false);
    let mut chars = command.chars();
    while let Some(c) = chars.next() {
        if c == CAPTURE_OPEN {
            if single || escaped {
                return Err("a captured output inside single quotes or after a backslash".into());
            }
            let name: String = chars.by_ref().take_while(|c| *c != CAPTURE_CLOSE).collect();
            out.push_str(&format!("${{{name}}}"));
            continue;
        }
        out.push(c);
        if escaped {
            escaped = false;
        } else if c == '\\' && !single {
            escaped = true;
        } else if c == '\'' && !double {
            single = !single;
        } else if c == '"' && !single {
            double = !double;
        }
    }
    Ok(out)
}

/// Whether a value holds a captured output.
fn has_capture(s: &str) -> bool {
    s.contains(CAPTURE_OPEN)
}

/// Step keys whose command sees captures as environment variables.
const CAPTURE_SEEING_KEYS: &[&str] = &["succeed", "fail", "waitUntilSucceeds", "waitUntilFails", "execute"];

/// `call.strip()`, `call.rstrip()`, `call.rstrip("\n")`: the call trimmed.
fn trimmed_call(e: &Expr) -> Option<&ast::ExprCall> {
    let Expr::Call(outer) = e else { return None };
    let Expr::Attribute(attr) = &*outer.func else { return None };
    let plain = outer.args.is_empty()
        || (attr.attr.as_str() == "rstrip"
            && matches!(outer.args.as_slice(), [Expr::Constant(c)] if matches!(&c.value, Constant::Str(s) if s == "\n")));
    if !matches!(attr.attr.as_str(), "strip" | "rstrip") || !plain || !outer.keywords.is_empty() {
        return None;
    }
    match &*attr.value {
        Expr::Call(inner) => Some(inner),
        _ => None,
    }
}

/// Step keys whose string may be a Nix value of the description
/// (docs/descriptions.md, "Nix values in steps"); `expect` strings too.
const COMPUTABLE_KEYS: &[&str] = &[
    "succeed",
    "fail",
    "waitUntilSucceeds",
    "waitUntilFails",
    "waitForUnit",
    "waitForFile",
    "waitForConsoleText",
    "systemctl",
    "requireUnitState",
    "startJob",
    "stopJob",
    "copyFromHost",
    "sendChars",
    "waitUntilTtyMatches",
    "waitForText",
    "waitForWindow",
];

/// How deep function calls are inlined.
const MAX_INLINE: usize = 8;

/// What Python's `str.strip()` removes without arguments (ASCII whitespace
/// and the other characters `str.isspace` accepts; the ASCII ones suffice
/// for commands, anything else is left to Python).
const PY_WHITESPACE: &[char] = &[' ', '\t', '\n', '\r', '\x0b', '\x0c'];

/// Why a statement stays as it was.
type Why = (String, String);

/// An expectation: its key (`contains`, `notContains`, `matches`) and value.
type Check = (&'static str, String);

/// The call a check is made on: `"x" in CALL`, `re.search(p, CALL)`, and
/// either `is not None`.
fn subject_call(e: &Expr) -> Option<&ast::ExprCall> {
    match e {
        Expr::Compare(c) if matches!(c.ops.as_slice(), [ast::CmpOp::In | ast::CmpOp::NotIn]) => {
            match &c.comparators[0] {
                Expr::Call(call) => Some(call),
                _ => None,
            }
        }
        Expr::Compare(c) if c.ops.as_slice() == [ast::CmpOp::IsNot] => subject_call(&c.left),
        Expr::Call(call) => {
            let at = match unittest_check(call) {
                Some(("matches", _)) => 0,
                _ => 1,
            };
            match call.args.get(at) {
                Some(Expr::Call(inner)) => Some(inner),
                _ => None,
            }
        }
        _ => None,
    }
}

/// `t.assertIn(needle, out)`, `t.assertNotIn(needle, out)` and
/// `t.assertRegex(out, pattern)` (with an optional message): the stock
/// driver's `t` is a `unittest.TestCase`, and these are the same checks as
/// `assert needle in out`, `… not in …` and `re.search(pattern, out)`.
/// Returns the expectation key and the name of the method.
fn unittest_check(call: &ast::ExprCall) -> Option<(&'static str, &str)> {
    let Expr::Attribute(attr) = &*call.func else { return None };
    if !matches!(&*attr.value, Expr::Name(t) if t.id.as_str() == "t") {
        return None;
    }
    let key = match attr.attr.as_str() {
        "assertIn" => "contains",
        "assertNotIn" => "notContains",
        "assertRegex" => "matches",
        _ => return None,
    };
    let message_only = call.keywords.iter().all(|k| k.arg.as_ref().is_some_and(|a| a.as_str() == "msg"));
    let positional = call.args.len() == 2 || (call.args.len() == 3 && call.keywords.is_empty());
    (message_only && positional && !call.args.iter().any(|a| matches!(a, Expr::Starred(_))))
        .then_some((key, attr.attr.as_str()))
}

/// The check a statement makes, if it is one: an `assert`'s test, or a
/// `t.assertIn(…)`-style call.
fn check_of(stmt: &Stmt) -> Option<&Expr> {
    match stmt {
        Stmt::Assert(a) => Some(&a.test),
        Stmt::Expr(e) => match &*e.value {
            Expr::Call(call) if unittest_check(call).is_some() => Some(&e.value),
            _ => None,
        },
        _ => None,
    }
}

/// Step keys whose main value is a regular expression.
const PATTERN_KEYS: &[&str] = &["waitForConsoleText", "waitUntilTtyMatches", "waitForText", "waitForWindow"];

/// A pattern that validation would refuse (one the two drivers read
/// differently, such as `\d`) stays Python, where the stock driver runs it.
fn portable_pattern(construct: &str, pattern: String) -> Result<String, Why> {
    if pattern.contains(PLACEHOLDER_PREFIX) {
        return Ok(pattern);
    }
    match crate::spec::pattern::check(&pattern) {
        Ok(()) => Ok(pattern),
        Err(e) => Err(why(construct, format!("the pattern `{pattern}`: {}", e.message))),
    }
}

fn why(construct: impl Into<String>, reason: impl Into<String>) -> Why {
    (construct.into(), reason.into())
}

impl Converter<'_> {
    fn line(&self, range: rustpython_parser::text_size::TextRange) -> usize {
        self.script.file_line(line_at(&self.script.text, u32::from(range.start()) as usize))
    }

    fn source(&self, range: rustpython_parser::text_size::TextRange) -> String {
        let start = u32::from(range.start()) as usize;
        let end = u32::from(range.end()) as usize;
        // Whole lines, so the comment shows the statement as written, with
        // the interpolations as in the file.
        let line_start = self.script.text[..start].rfind('\n').map_or(0, |i| i + 1);
        let mut text = self.script.text.get(line_start..end).unwrap_or_default().to_string();
        for (i, src) in self.script.interpolations.iter().enumerate() {
            text = text.replace(&super::nix::placeholder(i), &format!("${{{src}}}"));
        }
        text
    }

    fn todo(&self, range: rustpython_parser::text_size::TextRange, (construct, mut why): Why) -> Item {
        if self.python_steps {
            match self.python_code(range) {
                Ok((code, loads)) => {
                    let leftover = Leftover {
                        line: self.line(range),
                        construct,
                        why,
                        source: self.source(range),
                        python: true,
                    };
                    return Item::Python { code, loads, leftover };
                }
                Err(reason) => why = format!("{why}; not kept as a python step: {reason}"),
            }
        }
        Item::Todo(Leftover {
            line: self.line(range),
            construct,
            why,
            source: self.source(range),
            python: false,
        })
    }

    /// The statement at `range` as the code of a `python` step: its lines
    /// unchanged but for the indentation of its block, preceded by the
    /// values of the loop variables and constants it reads (which the
    /// description folded into other steps). Also the names it reads.
    fn python_code(
        &self,
        range: rustpython_parser::text_size::TextRange,
    ) -> Result<(String, BTreeSet<String>), String> {
        let text = &self.script.text;
        let (start, end) = (u32::from(range.start()) as usize, u32::from(range.end()) as usize);
        let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
        let prefix = &text[line_start..start];
        if !prefix.chars().all(|c| c == ' ' || c == '\t') {
            return Err("it shares its line with another statement".into());
        }
        let raw = &text[start..end];
        if raw.contains(PLACEHOLDER_PREFIX) {
            return Err("it holds a Nix value `${…}`, which a python step does not carry".into());
        }
        // Lines moved to another indentation must not be inside a string
        // (a triple-quoted string or a backslash continuation would change).
        let multi_line_string =
            raw.contains('\n') && (raw.contains("\"\"\"") || raw.contains("'''") || raw.contains("\\\n"));
        if multi_line_string && !prefix.is_empty() {
            return Err("a multi-line string in a nested block, whose lines would move".into());
        }
        let mut body = String::new();
        for (i, line) in raw.split('\n').enumerate() {
            if i > 0 {
                body.push('\n');
                match line.strip_prefix(prefix) {
                    Some(rest) => body.push_str(rest),
                    None if line.trim().is_empty() => {}
                    None => return Err("a line indented less than the statement's first".into()),
                }
            } else {
                body.push_str(line);
            }
        }
        let loads: BTreeSet<String> =
            self.loads.iter().filter(|(_, at)| (start..end).contains(at)).map(|(n, _)| n.clone()).collect();
        // A captured output exists only as `$NAME` in commands, not as a
        // Python variable of the generated script.
        if let Some(name) = loads.iter().find(|n| {
            self.captures.contains_key(n.as_str())
                || matches!(self.env.get(n.as_str()), Some(PyValue::Str(v)) if has_capture(v))
        }) {
            return Err(format!(
                "it reads `{name}`, a captured output, which only commands see (as `$NAME`)"
            ));
        }
        let mut code = String::new();
        for name in &loads {
            if let Some(value) = self.env.get(name) {
                code.push_str(&format!("{name} = {}\n", py_literal(value)));
            }
        }
        code.push_str(&body);
        Ok((code, loads))
    }

    /// A consumed definition (`import`, inlined `def`) binding `names`, for
    /// the python steps that may need it.
    fn def_item(
        &self,
        range: rustpython_parser::text_size::TextRange,
        names: BTreeSet<String>,
    ) -> Option<Item> {
        if !self.python_steps || self.frames > 0 {
            return None;
        }
        let (code, loads) = self.python_code(range).ok()?;
        Some(Item::Def { names, loads, code })
    }

    fn note(&mut self, range: rustpython_parser::text_size::TextRange, message: impl Into<String>) {
        let line = self.line(range);
        self.notes.push(Note { line, message: message.into() });
    }

    /// Converts a block whose text starts at `block_start` (after its
    /// header line).
    fn block(&mut self, stmts: &[Stmt], block_start: usize, depth: usize) -> Vec<Item> {
        let mut items = Vec::new();
        let mut i = 0;
        while i < stmts.len() {
            self.comments_before(stmts, i, block_start, &mut items);
            let consumed = self.stmt(stmts, i, depth, &mut items);
            i += consumed.max(1);
        }
        items
    }

    /// The comment lines between `stmts[i - 1]` (or `block_start`) and
    /// `stmts[i]`.
    fn comments_before(&self, stmts: &[Stmt], i: usize, block_start: usize, items: &mut Vec<Item>) {
        let text = &self.script.text;
        let start = u32::from(stmts[i].range().start()) as usize;
        let from = if i == 0 { block_start } else { u32::from(stmts[i - 1].range().end()) as usize };
        let Some(between) = text.get(from.min(start)..start) else { return };
        for line in between.lines() {
            if let Some(comment) = line.trim().strip_prefix('#') {
                items.push(Item::Comment(comment.trim().to_string()));
            }
        }
    }

    /// Converts `stmts[i]` (and the asserts that check its output); returns
    /// how many statements it used.
    fn stmt(&mut self, stmts: &[Stmt], i: usize, depth: usize, items: &mut Vec<Item>) -> usize {
        let stmt = &stmts[i];
        let range = stmt.range();
        if depth > MAX_NESTING {
            items.push(self.todo(range, why("nested block", "blocks are nested too deeply")));
            return 1;
        }
        if let Some(name) = generated_name(stmt) {
            items.push(self.todo(
                range,
                why(
                    "Python code from Nix",
                    format!(
                        "`{}` is Python source that Nix generates; what it does is not known before evaluation",
                        self.interpolation_source(&name)
                    ),
                ),
            ));
            return 1;
        }
        if let (Some(test), Stmt::Expr(_)) = (check_of(stmt), stmt)
            && !self.t_is_shadowed()
        {
            match self.assert_on_call(test, range) {
                Ok(step) => items.push(step),
                Err(w) => items.push(self.todo(range, w)),
            }
            return 1;
        }
        match stmt {
            Stmt::Expr(e) => match self.expr_stmt(&e.value, range, depth) {
                Ok(mut steps) => items.append(&mut steps),
                Err(w) => items.push(self.todo(range, w)),
            },
            Stmt::FunctionDef(f) if self.frames == 0 && depth == 0 => match inlinable(f, &self.stores) {
                Ok(()) => {
                    self.note(range, format!("function `{}` is inlined where it is called", f.name));
                    self.defs.insert(f.name.to_string(), f.clone());
                    items.extend(self.def_item(range, BTreeSet::from([f.name.to_string()])));
                }
                Err(w) => items.push(self.todo(range, w)),
            },
            Stmt::Pass(_) => {}
            Stmt::Import(_) | Stmt::ImportFrom(_) => {
                self.note(range, "dropped an import: the generated script imports what it uses");
                let names = match stmt {
                    Stmt::Import(i) => i
                        .names
                        .iter()
                        .map(|a| match &a.asname {
                            Some(n) => n.to_string(),
                            None => a.name.split('.').next().unwrap_or_default().to_string(),
                        })
                        .collect(),
                    Stmt::ImportFrom(i) => {
                        i.names.iter().map(|a| a.asname.as_ref().unwrap_or(&a.name).to_string()).collect()
                    }
                    _ => BTreeSet::new(),
                };
                items.extend(self.def_item(range, names));
            }
            Stmt::Assign(a) => return self.assign(stmts, i, a, items),
            Stmt::Assert(a) => match self.assert_on_call(&a.test, range) {
                Ok(step) => items.push(step),
                Err(w) => items.push(self.todo(range, w)),
            },
            Stmt::With(w) => match self.subtest(w, depth) {
                Ok(item) => items.push(item),
                Err(w) => items.push(self.todo(range, w)),
            },
            Stmt::For(f) => match self.unroll(f, depth) {
                Ok(mut unrolled) => items.append(&mut unrolled),
                Err(w) => items.push(self.todo(range, w)),
            },
            other => {
                let construct = stmt_kind(other);
                items.push(self.todo(range, why(construct, "no step expresses this Python statement")));
            }
        }
        1
    }

    /// `node.method(…)`, `start_all()`, `time.sleep(n)` as a statement.
    fn expr_stmt(
        &mut self,
        expr: &Expr,
        range: rustpython_parser::text_size::TextRange,
        depth: usize,
    ) -> Result<Vec<Item>, Why> {
        let Expr::Call(call) = expr else {
            if let Expr::Constant(c) = expr
                && matches!(c.value, Constant::Str(_))
            {
                // A docstring-like string statement does nothing.
                return Ok(Vec::new());
            }
            return Err(why(expr_kind(expr), "only calls of Machine methods become steps"));
        };
        match &*call.func {
            Expr::Name(n) if n.id.as_str() == "start_all" => {
                if !call.args.is_empty() || !call.keywords.is_empty() {
                    return Err(why("start_all", "start_all takes no arguments"));
                }
                if self.called || !self.down.is_empty() {
                    return Err(why(
                        "start_all",
                        "a description starts every node first; a later start_all() has no step",
                    ));
                }
                self.note(range, "dropped start_all(): a description starts every node first");
                Ok(Vec::new())
            }
            Expr::Attribute(attr)
                if matches!(&*attr.value, Expr::Name(m) if m.id.as_str() == "time")
                    && attr.attr.as_str() == "sleep" =>
            {
                let [arg] = call.args.as_slice() else {
                    return Err(why("time.sleep", "expected one argument"));
                };
                let seconds = match self.eval(arg)? {
                    PyValue::Int(i) if i >= 0 => NixValue::Int(i),
                    PyValue::Float(f) if f >= 0.0 => NixValue::Float(f),
                    _ => return Err(why("time.sleep", "the duration is not a number ≥ 0")),
                };
                Ok(vec![Item::Step {
                    node: None,
                    key: "sleep",
                    value: seconds,
                    extra: Vec::new(),
                    line: self.line(range),
                }])
            }
            Expr::Name(n) if n.id.as_str() == "print" => self.print(call, range),
            Expr::Name(n) if self.defs.contains_key(n.id.as_str()) => self.inline(call, n.id.as_str(), depth),
            _ => self.machine_call(call, range),
        }
    }

    /// `print(…)`: the Machine calls among its arguments become steps; the
    /// printing itself is dropped (the driver logs every command's output).
    fn print(
        &mut self,
        call: &ast::ExprCall,
        range: rustpython_parser::text_size::TextRange,
    ) -> Result<Vec<Item>, Why> {
        let mut steps = Vec::new();
        for arg in &call.args {
            match arg {
                Expr::Call(inner) if self.target(&inner.func).is_ok() => {
                    let (_, method) = self.target(&inner.func)?;
                    if !matches!(method, "succeed" | "fail" | "wait_until_succeeds" | "wait_until_fails") {
                        return Err(why("print", format!("prints the result of `{method}`")));
                    }
                    steps.extend(self.machine_call(inner, range)?);
                }
                other if has_call(other) => return Err(why("print", "an argument calls a function")),
                _ => {}
            }
        }
        if call.keywords.iter().any(|k| has_call(&k.value)) {
            return Err(why("print", "an argument calls a function"));
        }
        self.note(range, "dropped print(): the driver logs every command and its output");
        Ok(steps)
    }

    /// A call of a module-level function, inlined with its parameters bound.
    fn inline(&mut self, call: &ast::ExprCall, name: &str, depth: usize) -> Result<Vec<Item>, Why> {
        let construct = format!("{name}()");
        if self.frames >= MAX_INLINE {
            return Err(why(construct, "functions call each other too deeply to inline"));
        }
        let def = self.defs.get(name).cloned().ok_or_else(|| why(construct.clone(), "not inlinable"))?;
        if !call.keywords.is_empty() || call.args.len() != def.args.args.len() {
            return Err(why(construct, "the arguments do not match the parameters one by one"));
        }
        let mut frame = self.globals.clone();
        for (param, arg) in def.args.args.iter().zip(&call.args) {
            let value = self.eval(arg).map_err(|(_, w)| why(construct.clone(), w))?;
            frame.insert(param.def.arg.to_string(), value);
        }
        // The body with a trailing `return X` read as the statement `X`
        // (the call's value is not used: it is a statement).
        let mut body = def.body.clone();
        if let Some(Stmt::Return(ret)) = body.last().cloned() {
            body.pop();
            if let Some(value) = ret.value {
                body.push(Stmt::Expr(ast::StmtExpr { range: ret.range, value }));
            }
        }
        let saved = std::mem::replace(&mut self.env, frame);
        self.frames += 1;
        let items = self.block(&body, self.header_end(def.range), depth + 1);
        self.frames -= 1;
        self.env = saved;
        Ok(items)
    }

    /// The node a `node.method` expression acts on, and the method.
    fn target<'e>(&self, func: &'e Expr) -> Result<(String, &'e str), Why> {
        let Expr::Attribute(attr) = func else {
            return Err(why(expr_kind(func), "not a Machine method call"));
        };
        let Expr::Name(obj) = &*attr.value else {
            return Err(why(format!("….{}", attr.attr), "the object is not a node variable"));
        };
        match self.nodes.get(obj.id.as_str()) {
            Some(node) => Ok((node.clone(), attr.attr.as_str())),
            None => Err(why(
                format!("{}.{}", obj.id, attr.attr),
                format!("`{}` is not a node of the test", obj.id),
            )),
        }
    }

    fn node_key(&self, node: &str) -> Option<String> {
        (!self.single).then(|| node.to_string())
    }

    /// A Machine method call as steps.
    fn machine_call(
        &mut self,
        call: &ast::ExprCall,
        range: rustpython_parser::text_size::TextRange,
    ) -> Result<Vec<Item>, Why> {
        let (node, method) = self.target(&call.func)?;
        let line = self.line(range);
        let construct = format!("Machine.{method}");
        match method {
            "start" => {
                if !call.args.is_empty() || !call.keywords.is_empty() {
                    return Err(why(construct, "start with arguments (allow_reboot) has no step"));
                }
                if self.down.remove(&node) {
                    self.called = true;
                    return Ok(vec![Item::Step {
                        node: self.node_key(&node),
                        key: "start",
                        value: NixValue::Bool(true),
                        extra: Vec::new(),
                        line,
                    }]);
                }
                if self.called {
                    return Err(why(
                        construct,
                        "a description starts every node first; a node that boots later has no step",
                    ));
                }
                self.note(
                    range,
                    format!("dropped {}.start(): a description starts every node first", pythonize(&node)),
                );
                return Ok(Vec::new());
            }
            "sleep" => {
                // The stock driver sleeps in the guest: `succeed(f"sleep {secs}")`.
                let [arg] = call.args.as_slice() else { return Err(why(construct, "expected one argument")) };
                let secs = match self.eval(arg)? {
                    PyValue::Int(i) => i.to_string(),
                    PyValue::Float(f) => format!("{f}"),
                    _ => return Err(why(construct, "the duration is not a number")),
                };
                self.called = true;
                return Ok(vec![Item::Step {
                    node: self.node_key(&node),
                    key: "succeed",
                    value: NixValue::Str(format!("sleep {secs}")),
                    extra: Vec::new(),
                    line,
                }]);
            }
            _ => {}
        }
        let Some(m) = METHODS.iter().find(|m| m.name == method) else {
            return Err(why(construct, format!("`{method}` has no step in the description vocabulary yet")));
        };
        let mut mains = Vec::new();
        let mut extra = Vec::new();
        let mut timeout = None;
        let positional: Vec<&(&str, Role)> = m.params.iter().collect();
        for (idx, arg) in call.args.iter().enumerate() {
            if matches!(arg, Expr::Starred(_)) {
                return Err(why(construct, "a *args argument"));
            }
            let param = if m.variadic && idx > 0 { positional.first() } else { positional.get(idx) };
            let Some((_, role)) = param else {
                return Err(why(construct, "more arguments than the method takes"));
            };
            self.bind(m.key, *role, arg, &construct, &mut mains, &mut extra, &mut timeout)?;
        }
        for kw in &call.keywords {
            let Some(arg_name) = &kw.arg else { return Err(why(construct, "a **kwargs argument")) };
            let Some((_, role)) = m.params.iter().find(|(p, _)| *p == arg_name.as_str()) else {
                return Err(why(construct, format!("the argument `{arg_name}` has no step key")));
            };
            self.bind(m.key, *role, &kw.value, &construct, &mut mains, &mut extra, &mut timeout)?;
        }
        let needs_main = m.params.iter().any(|(_, r)| matches!(r, Role::Main(_)));
        if needs_main && mains.is_empty() {
            return Err(why(construct, "the main argument is missing"));
        }
        if let Some(t) = timeout {
            extra.push(("timeout".to_string(), t));
        }
        self.called = true;
        if matches!(method, "shutdown" | "crash") {
            self.down.insert(node.clone());
        }
        if mains.is_empty() {
            mains.push(NixValue::Bool(true));
        }
        Ok(mains
            .into_iter()
            .map(|value| Item::Step {
                node: self.node_key(&node),
                key: m.key,
                value,
                extra: extra.clone(),
                line,
            })
            .collect())
    }

    #[allow(clippy::too_many_arguments)]
    fn bind(
        &self,
        key: &str,
        role: Role,
        arg: &Expr,
        construct: &str,
        mains: &mut Vec<NixValue>,
        extra: &mut Vec<(String, NixValue)>,
        timeout: &mut Option<NixValue>,
    ) -> Result<(), Why> {
        if matches!(role, Role::Unsupported) {
            return Err(why(construct, "an argument no step key expresses"));
        }
        let mut value = self.eval(arg).map_err(|(_, w)| why(construct, w))?;
        if let PyValue::Str(s) = &value
            && has_capture(s)
        {
            if !(matches!(role, Role::Main(_)) && CAPTURE_SEEING_KEYS.contains(&key)) {
                return Err(why(construct, "a captured output where only a command can use it (as `$NAME`)"));
            }
            value = PyValue::Str(shell_captures(s).map_err(|w| why(construct, w))?);
        }
        if let PyValue::Str(s) = &value
            && matches!(role, Role::Main(_))
            && PATTERN_KEYS.contains(&key)
        {
            portable_pattern(construct, s.clone())?;
        }
        if let PyValue::Str(s) = &value
            && s.contains(PLACEHOLDER_PREFIX)
        {
            let computable = match role {
                Role::Main(_) => COMPUTABLE_KEYS.contains(&key),
                Role::Extra(..) | Role::Timeout | Role::Unsupported => false,
            };
            if !computable {
                return Err(why(
                    construct,
                    "a Nix value where a description needs a literal (only commands, unit names, paths and patterns may be computed)",
                ));
            }
        }
        match role {
            Role::Main(kind) => {
                mains.push(typed(value, kind).ok_or_else(|| why(construct, "an argument of the wrong type"))?)
            }
            Role::Extra(key, kind) => extra.push((
                key.to_string(),
                typed(value, kind).ok_or_else(|| why(construct, "an argument of the wrong type"))?,
            )),
            Role::Unsupported => return Err(why(construct, "an argument no step key expresses")),
            Role::Timeout => {
                *timeout = Some(match value {
                    PyValue::Int(i) if i > 0 => NixValue::Int(i),
                    _ => return Err(why(construct, "a timeout that is not a positive integer")),
                })
            }
        }
        Ok(())
    }

    /// `out = node.succeed(cmd)` and the asserts on `out` that follow.
    fn assign(&mut self, stmts: &[Stmt], i: usize, a: &ast::StmtAssign, items: &mut Vec<Item>) -> usize {
        let range = a.range;
        let target = match a.targets.as_slice() {
            [Expr::Name(n)] => n.id.to_string(),
            _ => {
                items.push(self.todo(range, why("assignment", "only `name = node.method(…)` is converted")));
                return 1;
            }
        };
        if let Some(inner) = trimmed_call(&a.value)
            && self.target(&inner.func).is_ok()
        {
            return self.assign_captured(stmts, i, a, &target, inner, items);
        }
        let Expr::Call(call) = &*a.value else {
            // A name assigned once to a value the converter can compute is a
            // constant: folded into the steps that use it.
            if self.stores.get(&target) == Some(&1)
                && let Ok(value) = self.eval(&a.value)
            {
                if self.frames == 0 {
                    self.globals.insert(target.clone(), value.clone());
                }
                self.env.insert(target.clone(), value);
                self.note(range, format!("`{target}` is a constant: its value is written into the steps"));
                return 1;
            }
            items.push(self.todo(
                range,
                why("assignment", "the value is not a Machine call; descriptions have no variables"),
            ));
            return 1;
        };
        let method = match self.target(&call.func) {
            Ok((_, m)) => m.to_string(),
            Err(w) => {
                items.push(self.todo(range, w));
                return 1;
            }
        };
        // The asserts right after the assignment that check the output.
        let mut checks = Vec::new();
        let mut comments = Vec::new();
        let mut j = i + 1;
        loop {
            // `print(out)` between the call and its checks prints only.
            if let Some(Stmt::Expr(e)) = stmts.get(j)
                && matches!(&*e.value, Expr::Call(c) if matches!(&*c.func, Expr::Name(n) if n.id.as_str() == "print"))
                && !has_call_inside(&e.value)
                && stmts.get(j + 1).and_then(check_of).is_some()
            {
                self.note(stmts[j].range(), "dropped print(): the driver logs every command and its output");
                j += 1;
                continue;
            }
            let Some(test) = stmts.get(j).and_then(check_of) else { break };
            if matches!(stmts[j], Stmt::Expr(_)) && self.t_is_shadowed() {
                break;
            }
            self.comments_before(stmts, j, 0, &mut comments);
            match self.output_check(test, &target) {
                Some(Ok(check)) => checks.push(check),
                Some(Err(w)) => {
                    items.push(self.todo(stmts[i].range().cover(stmts[j].range()), w));
                    return j - i + 1;
                }
                None => break,
            }
            j += 1;
        }
        let end = stmts[j - 1].range().end();
        let used_later =
            self.loads.iter().any(|(name, at)| *name == target && *at >= u32::from(end) as usize);
        let whole = stmts[i].range().cover(stmts[j - 1].range());
        if used_later {
            items.push(self.todo(
                whole,
                why("assignment", format!("`{target}` is used later; descriptions have no captures yet")),
            ));
            return j - i;
        }
        if !checks.is_empty() && method != "succeed" {
            items.push(self.todo(
                whole,
                why(format!("Machine.{method}"), "checks on the output of this method have no step"),
            ));
            return j - i;
        }
        items.append(&mut comments);
        match self.with_checks(call, range, checks) {
            Ok(mut steps) => items.append(&mut steps),
            Err(w) => items.push(self.todo(whole, w)),
        }
        j - i
    }

    /// Whether the script binds `t` itself (then `t.assertIn` is not the
    /// driver's `unittest.TestCase`).
    fn t_is_shadowed(&self) -> bool {
        self.stores.contains_key("t") || self.nodes.contains_key("t")
    }

    /// `x = node.succeed(cmd).strip()`: a capture when `x` is used later
    /// (then only in commands, as `$X`), else the plain step.
    fn assign_captured(
        &mut self,
        stmts: &[Stmt],
        i: usize,
        a: &ast::StmtAssign,
        target: &str,
        call: &ast::ExprCall,
        items: &mut Vec<Item>,
    ) -> usize {
        let range = a.range;
        let end = u32::from(range.end()) as usize;
        let used_later = self.loads.iter().any(|(name, at)| name == target && *at >= end);
        let (_, method) = match self.target(&call.func) {
            Ok(t) => t,
            Err(w) => {
                items.push(self.todo(range, w));
                return 1;
            }
        };
        if !used_later {
            match self.machine_call(call, range) {
                Ok(mut steps) => items.append(&mut steps),
                Err(w) => items.push(self.todo(range, w)),
            }
            return 1;
        }
        let name = target.to_uppercase();
        // (`wait_until_succeeds` with a check is a retry loop of `execute`
        // in the generated script: not the same calls.)
        let refuse = if method != "succeed" || call.args.len() != 1 {
            Some(format!("`{target}` is used later; only the output of one `succeed` command is captured"))
        } else if self.stores.get(target) != Some(&1) || self.loops > 0 || self.frames > 0 {
            Some(format!("`{target}` is used later and assigned more than once (a capture is set once)"))
        } else if !crate::spec::captures::valid_capture_name(&name)
            || crate::spec::captures::reserved(&name).is_some()
            || self.captures.values().any(|n| *n == name)
        {
            Some(format!("`{target}` is used later, and `{name}` cannot be a capture's name"))
        } else {
            None
        };
        if let Some(reason) = refuse {
            items.push(self.todo(range, why("assignment", reason)));
            return 1;
        }
        let _ = stmts;
        let _ = i;
        match self.machine_call(call, range) {
            Ok(mut steps) if steps.len() == 1 => {
                if let Some(Item::Step { extra, .. }) = steps.first_mut() {
                    extra.push(("capture".into(), NixValue::Str(name.clone())));
                    extra.push(("expect.matches".into(), NixValue::Str(PLAIN_CAPTURE.into())));
                }
                self.note(
                    range,
                    format!(
                        "`{target}` is captured as `${name}`; the step checks the output is plain (`{PLAIN_CAPTURE}`), where `$NAME` equals the pasted text"
                    ),
                );
                self.captures.insert(target.to_string(), name);
                items.append(&mut steps);
            }
            Ok(_) => items.push(self.todo(range, why("assignment", "a capture of several commands"))),
            Err(w) => items.push(self.todo(range, w)),
        }
        1
    }

    /// `assert "x" in node.succeed(cmd)`, `t.assertIn("x", node.succeed(cmd))`
    /// and the like.
    fn assert_on_call(
        &mut self,
        test: &Expr,
        range: rustpython_parser::text_size::TextRange,
    ) -> Result<Item, Why> {
        let (call, check) = self.check_on_call(test).ok_or_else(|| {
            why(
                "assert",
                "only `\"x\" in out`, `\"x\" not in out` and `re.search(p, out)` on a command's output become expectations",
            )
        })??;
        let mut steps = self.with_checks(call, range, vec![check])?;
        match steps.len() {
            1 => Ok(steps.remove(0)),
            _ => Err(why("assert", "a check on several commands' joint output")),
        }
    }

    /// A `succeed` call with output checks as one step.
    fn with_checks(
        &mut self,
        call: &ast::ExprCall,
        range: rustpython_parser::text_size::TextRange,
        checks: Vec<Check>,
    ) -> Result<Vec<Item>, Why> {
        // `contains`/`notContains` take a list; `matches` holds one.
        let mut grouped: Vec<(&'static str, Vec<String>)> = Vec::new();
        for (key, value) in checks {
            match grouped.iter_mut().find(|(k, _)| *k == key) {
                Some(_) if key == "matches" => {
                    return Err(why(
                        "assert",
                        "two `re.search` checks on one output; a step's expect holds one",
                    ));
                }
                Some((_, values)) => values.push(value),
                None => grouped.push((key, vec![value])),
            }
        }
        for (key, values) in &grouped {
            if values.len() > 1 && values.iter().any(|v| v.contains(PLACEHOLDER_PREFIX)) {
                return Err(why(
                    "assert",
                    format!(
                        "several `{key}` checks on one output, one of them a Nix value; only literal lists are converted"
                    ),
                ));
            }
        }
        let (_, method) = self.target(&call.func)?;
        if !grouped.is_empty() && (method != "succeed" || call.args.len() != 1) {
            return Err(why(format!("Machine.{method}"), "checks on this call's output have no step"));
        }
        let mut steps = self.machine_call(call, range)?;
        if let Some(Item::Step { extra, .. }) = steps.first_mut() {
            for (key, mut values) in grouped {
                let value = match values.len() {
                    1 => NixValue::Str(values.remove(0)),
                    _ => NixValue::List(values.into_iter().map(NixValue::Str).collect()),
                };
                extra.push((format!("expect.{key}"), value));
            }
        }
        Ok(steps)
    }

    /// An output check on variable `var`: `Some(Ok)` when understood,
    /// `Some(Err)` when it checks `var` some other way, `None` when it is
    /// not about `var`.
    fn output_check(&self, test: &Expr, var: &str) -> Option<Result<Check, Why>> {
        let is_var = |e: &Expr| matches!(e, Expr::Name(n) if n.id.as_str() == var);
        let mentions = {
            let mut loads = Vec::new();
            collect_loads_expr(test, &mut loads);
            loads.iter().any(|(n, _)| n == var)
        };
        if !mentions {
            return None;
        }
        Some(self.check(test, &is_var).ok_or_else(|| {
            why("assert", format!("this check on `{var}` has no expectation (only `\"x\" in {var}`, `\"x\" not in {var}` and `re.search(p, {var})`)"))
        }).and_then(|r| r))
    }

    /// `"x" in <subject>` → contains, `re.search(p, <subject>)` → matches.
    fn check(&self, test: &Expr, is_subject: &dyn Fn(&Expr) -> bool) -> Option<Result<Check, Why>> {
        match test {
            Expr::Compare(c) if c.ops.as_slice() == [ast::CmpOp::In] && is_subject(&c.comparators[0]) => {
                Some(match self.eval(&c.left) {
                    Ok(PyValue::Str(s)) if has_capture(&s) => {
                        Err(why("assert", "a check against a captured output"))
                    }
                    Ok(PyValue::Str(s)) => Ok(("contains", s)),
                    Ok(_) => Err(why("assert", "the needle is not a string")),
                    Err(w) => Err(w),
                })
            }
            Expr::Compare(c) if c.ops.as_slice() == [ast::CmpOp::NotIn] && is_subject(&c.comparators[0]) => {
                Some(match self.eval(&c.left) {
                    Ok(PyValue::Str(s)) if has_capture(&s) => {
                        Err(why("assert", "a check against a captured output"))
                    }
                    Ok(PyValue::Str(s)) => Ok(("notContains", s)),
                    Ok(_) => Err(why("assert", "the needle is not a string")),
                    Err(w) => Err(w),
                })
            }
            Expr::Compare(c)
                if c.ops.as_slice() == [ast::CmpOp::IsNot]
                    && matches!(&c.comparators[0], Expr::Constant(k) if matches!(k.value, Constant::None)) =>
            {
                self.check(&c.left, is_subject)
            }
            Expr::Call(call) if unittest_check(call).is_some() => {
                let (key, _) = unittest_check(call)?;
                let (subject, value) = if key == "matches" {
                    (&call.args[0], &call.args[1])
                } else {
                    (&call.args[1], &call.args[0])
                };
                if !is_subject(subject) {
                    return None;
                }
                Some(match self.eval(value) {
                    Ok(PyValue::Str(s)) if has_capture(&s) => {
                        Err(why("assert", "a check against a captured output"))
                    }
                    Ok(PyValue::Str(s)) if key == "matches" => {
                        portable_pattern("assert", s).map(|s| (key, s))
                    }
                    Ok(PyValue::Str(s)) => Ok((key, s)),
                    Ok(_) => Err(why("assert", "the needle or pattern is not a string")),
                    Err(w) => Err(w),
                })
            }
            Expr::Call(call)
                if matches!(&*call.func, Expr::Attribute(a) if a.attr.as_str() == "search" && matches!(&*a.value, Expr::Name(m) if m.id.as_str() == "re"))
                    && call.args.len() == 2
                    && call.keywords.is_empty()
                    && is_subject(&call.args[1]) =>
            {
                Some(match self.eval(&call.args[0]) {
                    Ok(PyValue::Str(s)) if has_capture(&s) => {
                        Err(why("assert", "a check against a captured output"))
                    }
                    Ok(PyValue::Str(s)) => portable_pattern("assert", s).map(|s| ("matches", s)),
                    Ok(_) => Err(why("assert", "the pattern is not a string")),
                    Err(w) => Err(w),
                })
            }
            _ => None,
        }
    }

    /// A check whose subject is a `node.succeed(…)` call itself.
    fn check_on_call<'e>(&self, test: &'e Expr) -> Option<Result<(&'e ast::ExprCall, Check), Why>> {
        let call = subject_call(test).filter(|c| self.target(&c.func).is_ok())?;
        let subject = |e: &Expr| matches!(e, Expr::Call(c) if std::ptr::eq(c, call));
        Some(self.check(test, &subject)?.map(|check| (call, check)))
    }

    /// `with subtest("title"):` as a subtest step.
    fn subtest(&mut self, w: &ast::StmtWith, depth: usize) -> Result<Item, Why> {
        let [item] = w.items.as_slice() else {
            return Err(why("with", "a `with` of several context managers"));
        };
        if item.optional_vars.is_some() {
            return Err(why("with", "`with … as …`"));
        }
        let Expr::Call(call) = &item.context_expr else {
            return Err(why("with", "only `with subtest(…)` is converted"));
        };
        if !matches!(&*call.func, Expr::Name(n) if n.id.as_str() == "subtest")
            || call.args.len() != 1
            || !call.keywords.is_empty()
        {
            return Err(why("with", "only `with subtest(\"title\")` is converted"));
        }
        let PyValue::Str(title) = self.eval(&call.args[0])? else {
            return Err(why("subtest", "the title is not a string"));
        };
        if title.contains(PLACEHOLDER_PREFIX) || has_capture(&title) {
            return Err(why("subtest", "a title with a Nix value (a subtest title must be a literal)"));
        }
        let items = self.block(&w.body, self.header_end(w.range), depth + 1);
        Ok(Item::Subtest { title, items, line: self.line(w.range) })
    }

    /// `for x in [literal, …]:` unrolled.
    fn unroll(&mut self, f: &ast::StmtFor, depth: usize) -> Result<Vec<Item>, Why> {
        if !f.orelse.is_empty() {
            return Err(why("for loop", "a `for … else`"));
        }
        let Expr::Name(var) = &*f.target else {
            return Err(why("for loop", "the loop variable is not a plain name"));
        };
        let elts = match &*f.iter {
            Expr::List(l) => &l.elts,
            Expr::Tuple(t) => &t.elts,
            _ => return Err(why("for loop", "only loops over a literal list are unrolled")),
        };
        if contains_jump(&f.body) {
            return Err(why("for loop", "`break`/`continue` in the loop"));
        }
        let values: Vec<PyValue> = elts.iter().map(|e| self.eval(e)).collect::<Result<_, _>>()?;
        let name = var.id.to_string();
        let saved = self.env.remove(&name);
        let mut items = Vec::new();
        for value in values {
            if self.frames == 0 {
                self.globals.insert(name.clone(), value.clone());
            }
            self.env.insert(name.clone(), value);
            self.loops += 1;
            items.extend(self.block(&f.body, self.header_end(f.range), depth + 1));
            self.loops -= 1;
        }
        self.env.remove(&name);
        if let Some(v) = saved {
            self.env.insert(name, v);
        }
        Ok(items)
    }

    /// Evaluates a constant expression: literals, loop variables, f-strings
    /// and `+` over them.
    fn eval(&self, expr: &Expr) -> Result<PyValue, Why> {
        self.eval_in(expr, &self.env, 0)
    }

    /// [`Self::eval`] with the variables of `env`; `depth` counts the
    /// pure functions being evaluated.
    fn eval_in(&self, expr: &Expr, env: &BTreeMap<String, PyValue>, depth: usize) -> Result<PyValue, Why> {
        if depth > MAX_INLINE {
            return Err(why("call", "functions call each other too deeply"));
        }
        match expr {
            Expr::Constant(c) => match &c.value {
                Constant::Str(s) => match s.find(PLACEHOLDER_PREFIX) {
                    Some(_) => self.nix_valued(s),
                    None => Ok(PyValue::Str(s.clone())),
                },
                Constant::Int(i) => {
                    i64::try_from(i.clone()).map(PyValue::Int).map_err(|_| why("integer", "out of range"))
                }
                Constant::Float(f) => Ok(PyValue::Float(*f)),
                Constant::Bool(b) => Ok(PyValue::Bool(*b)),
                _ => Err(why("constant", "not a string or number")),
            },
            Expr::Name(n) => {
                if n.id.as_str().starts_with(PLACEHOLDER_PREFIX) {
                    return Err(why("Nix interpolation", self.interpolation_why(n.id.as_str())));
                }
                if let Some(value) = env.get(n.id.as_str()) {
                    return Ok(value.clone());
                }
                if let Some(name) = self.captures.get(n.id.as_str()) {
                    return Ok(PyValue::Str(format!("{CAPTURE_OPEN}{name}{CAPTURE_CLOSE}")));
                }
                Err(why(
                    "variable",
                    format!("`{}` is a Python variable; descriptions hold values only", n.id),
                ))
            }
            Expr::JoinedStr(j) => {
                let mut s = String::new();
                for part in &j.values {
                    match part {
                        Expr::FormattedValue(fv)
                            if fv.format_spec.is_none() && fv.conversion == ast::ConversionFlag::None =>
                        {
                            match self.eval_in(&fv.value, env, depth)? {
                                PyValue::Str(v) => s.push_str(&v),
                                PyValue::Int(i) => s.push_str(&i.to_string()),
                                _ => {
                                    return Err(why(
                                        "f-string",
                                        "a formatted value that is not a string or integer",
                                    ));
                                }
                            }
                        }
                        other => match self.eval_in(other, env, depth)? {
                            PyValue::Str(v) => s.push_str(&v),
                            _ => return Err(why("f-string", "an unexpected part")),
                        },
                    }
                }
                Ok(PyValue::Str(s))
            }
            Expr::BinOp(b) if b.op == ast::Operator::Add => {
                match (self.eval_in(&b.left, env, depth)?, self.eval_in(&b.right, env, depth)?) {
                    (PyValue::Str(l), PyValue::Str(r)) => Ok(PyValue::Str(l + &r)),
                    (PyValue::Int(l), PyValue::Int(r)) => {
                        l.checked_add(r).map(PyValue::Int).ok_or_else(|| why("integer", "overflow"))
                    }
                    _ => Err(why("operator", "`+` on values of different types")),
                }
            }
            Expr::UnaryOp(u) if u.op == ast::UnaryOp::USub => match self.eval_in(&u.operand, env, depth)? {
                PyValue::Int(i) => Ok(PyValue::Int(-i)),
                PyValue::Float(f) => Ok(PyValue::Float(-f)),
                _ => Err(why("operator", "`-` on a non-number")),
            },
            Expr::Call(call) => self.eval_call(call, env, depth),
            other => Err(why(expr_kind(other), "not a value the converter can compute")),
        }
    }

    /// Calls with a value known statically: a module-level function whose
    /// body is `return <expression>`, `"sep".join([…])`, `str(n)`, and
    /// `.strip()`/`.rstrip()`/`.lstrip()` of a known string.
    fn eval_call(
        &self,
        call: &ast::ExprCall,
        env: &BTreeMap<String, PyValue>,
        depth: usize,
    ) -> Result<PyValue, Why> {
        let args = || -> Result<Vec<PyValue>, Why> {
            if !call.keywords.is_empty() {
                return Err(why("call", "keyword arguments"));
            }
            call.args.iter().map(|a| self.eval_in(a, env, depth)).collect()
        };
        match &*call.func {
            Expr::Name(n) if n.id.as_str() == "str" => match args()?.as_slice() {
                [PyValue::Int(i)] => Ok(PyValue::Str(i.to_string())),
                [PyValue::Str(s)] => Ok(PyValue::Str(s.clone())),
                _ => Err(why("str()", "not a string or integer")),
            },
            Expr::Name(n) if self.defs.contains_key(n.id.as_str()) => {
                let def = &self.defs[n.id.as_str()];
                let body: Vec<&Stmt> = def
                    .body
                    .iter()
                    .filter(|s| !matches!(s, Stmt::Expr(e) if matches!(&*e.value, Expr::Constant(_))))
                    .collect();
                let [Stmt::Return(ast::StmtReturn { value: Some(value), .. })] = body.as_slice() else {
                    return Err(why(format!("{}()", n.id), "a function that does more than return a value"));
                };
                let values = args()?;
                if values.len() != def.args.args.len() {
                    return Err(why(format!("{}()", n.id), "the arguments do not match the parameters"));
                }
                let mut frame = self.globals.clone();
                for (param, value) in def.args.args.iter().zip(values) {
                    frame.insert(param.def.arg.to_string(), value);
                }
                self.eval_in(value, &frame, depth + 1)
            }
            Expr::Attribute(attr) => {
                let method = attr.attr.as_str();
                let PyValue::Str(object) = self.eval_in(&attr.value, env, depth)? else {
                    return Err(why(format!("….{method}()"), "a method of a value that is not a string"));
                };
                match (method, call.args.as_slice()) {
                    ("join", [list]) => {
                        let elts = match list {
                            Expr::List(l) => &l.elts,
                            Expr::Tuple(t) => &t.elts,
                            _ => return Err(why(".join()", "joins something other than a literal list")),
                        };
                        let mut parts = Vec::new();
                        for e in elts {
                            match self.eval_in(e, env, depth)? {
                                PyValue::Str(p) => parts.push(p),
                                _ => return Err(why(".join()", "joins something other than strings")),
                            }
                        }
                        Ok(PyValue::Str(parts.join(&object)))
                    }
                    ("strip" | "rstrip" | "lstrip", []) if object.contains(PLACEHOLDER_PREFIX) => Err(why(
                        format!("….{method}()"),
                        "strips a string holding a Nix value, whose ends are not known",
                    )),
                    ("strip" | "rstrip" | "lstrip", []) => {
                        let stripped = match method {
                            "strip" => object.trim_matches(PY_WHITESPACE),
                            "rstrip" => object.trim_end_matches(PY_WHITESPACE),
                            _ => object.trim_start_matches(PY_WHITESPACE),
                        };
                        // Python strips more kinds of space than these; refuse
                        // rather than guess when one of them is at an end.
                        let odd = |c: char| c.is_whitespace() || ('\x1c'..='\x1f').contains(&c);
                        if stripped.starts_with(odd) || stripped.ends_with(odd) {
                            return Err(why(
                                format!("….{method}()"),
                                "unusual whitespace at an end of the string",
                            ));
                        }
                        Ok(PyValue::Str(stripped.to_string()))
                    }
                    _ => Err(why(format!("….{method}()"), "a string method the converter does not compute")),
                }
            }
            other => Err(why(expr_kind(other), "not a value the converter can compute")),
        }
    }

    /// The end of the first line of a compound statement (its header).
    fn header_end(&self, range: rustpython_parser::text_size::TextRange) -> usize {
        let start = u32::from(range.start()) as usize;
        self.script.text[start..].find('\n').map_or(self.script.text.len(), |i| start + i)
    }

    /// A string holding `${…}`: kept (placeholders and all) when every
    /// interpolation in it can be a Nix value of the description.
    fn nix_valued(&self, s: &str) -> Result<PyValue, Why> {
        for (i, src) in self.script.interpolations.iter().enumerate() {
            if !s.contains(&super::nix::placeholder(i)) {
                continue;
            }
            match self.interpolations.get(&i) {
                Some(Ok(())) => {}
                Some(Err(reason)) => {
                    return Err(why("Nix interpolation", format!("`${{{src}}}` {reason}")));
                }
                None => return Err(why("Nix interpolation", self.interpolation_why(s))),
            }
        }
        Ok(PyValue::Str(s.to_string()))
    }

    /// The `${…}` source(s) a text with placeholders holds.
    fn interpolation_source(&self, text: &str) -> String {
        let shown: Vec<String> = self
            .script
            .interpolations
            .iter()
            .enumerate()
            .filter(|(i, _)| text.contains(&super::nix::placeholder(*i)))
            .map(|(_, src)| format!("${{{src}}}"))
            .collect();
        shown.join(", ")
    }

    fn interpolation_why(&self, text: &str) -> String {
        let shown: Vec<String> = self
            .script
            .interpolations
            .iter()
            .enumerate()
            .filter(|(i, _)| text.contains(&super::nix::placeholder(*i)))
            .map(|(_, src)| format!("${{{src}}}"))
            .collect();
        format!(
            "it uses the Nix value {}; descriptions cannot carry Nix values in steps yet",
            shown.join(", ")
        )
    }
}

/// A Python literal for a value the converter computed.
fn py_literal(value: &PyValue) -> String {
    match value {
        PyValue::Str(s) => crate::codegen::escape::python_string(s),
        PyValue::Int(i) => i.to_string(),
        PyValue::Float(f) => format!("{f:?}"),
        PyValue::Bool(true) => "True".into(),
        PyValue::Bool(false) => "False".into(),
    }
}

fn typed(value: PyValue, kind: Kind) -> Option<NixValue> {
    match (value, kind) {
        (PyValue::Str(s), Kind::Str) => Some(NixValue::Str(s)),
        (PyValue::Int(i), Kind::Int) => Some(NixValue::Int(i)),
        // `wait_for_open_port("15672")`: the stock driver only formats the
        // port into `nc -z {addr} {port}`, so a string of the number's own
        // digits is the same port.
        (PyValue::Str(s), Kind::Int) => {
            s.parse::<i64>().ok().filter(|i| i.to_string() == s).map(NixValue::Int)
        }
        _ => None,
    }
}

fn contains_jump(stmts: &[Stmt]) -> bool {
    stmts.iter().any(|s| match s {
        Stmt::Break(_) | Stmt::Continue(_) => true,
        Stmt::If(i) => contains_jump(&i.body) || contains_jump(&i.orelse),
        Stmt::With(w) => contains_jump(&w.body),
        Stmt::Try(t) => contains_jump(&t.body) || contains_jump(&t.orelse) || contains_jump(&t.finalbody),
        _ => false,
    })
}

/// A readable name of a statement kind.
fn stmt_kind(stmt: &Stmt) -> String {
    match stmt {
        Stmt::FunctionDef(_) | Stmt::AsyncFunctionDef(_) => "function definition",
        Stmt::ClassDef(_) => "class definition",
        Stmt::If(_) => "if statement",
        Stmt::While(_) => "while loop",
        Stmt::Try(_) | Stmt::TryStar(_) => "try statement",
        Stmt::AugAssign(_) | Stmt::AnnAssign(_) => "assignment",
        Stmt::Return(_) => "return",
        Stmt::Delete(_) => "del",
        Stmt::Raise(_) => "raise",
        Stmt::Global(_) | Stmt::Nonlocal(_) => "global declaration",
        Stmt::Match(_) => "match statement",
        _ => "statement",
    }
    .to_string()
}

fn expr_kind(expr: &Expr) -> String {
    match expr {
        Expr::Call(c) => match &*c.func {
            Expr::Name(n) => format!("{}()", n.id),
            Expr::Attribute(a) => format!("….{}()", a.attr),
            _ => "call".into(),
        },
        Expr::Name(n) => format!("variable `{}`", n.id),
        Expr::Subscript(_) => "subscript".into(),
        Expr::Attribute(a) => format!("attribute `{}`", a.attr),
        Expr::ListComp(_) | Expr::GeneratorExp(_) | Expr::SetComp(_) | Expr::DictComp(_) => {
            "comprehension".into()
        }
        Expr::Lambda(_) => "lambda".into(),
        Expr::Compare(_) => "comparison".into(),
        Expr::BoolOp(_) => "boolean expression".into(),
        Expr::Await(_) => "await".into(),
        _ => "expression".into(),
    }
}

/// Whether a function can be inlined at its calls: plain positional
/// parameters, no decorators, defined once, `return` only at the end.
fn inlinable(f: &ast::StmtFunctionDef, stores: &BTreeMap<String, usize>) -> Result<(), Why> {
    let construct = format!("function `{}`", f.name);
    if !f.decorator_list.is_empty() {
        return Err(why(construct, "a decorated function"));
    }
    let a = &f.args;
    if a.vararg.is_some() || a.kwarg.is_some() || !a.kwonlyargs.is_empty() || !a.posonlyargs.is_empty() {
        return Err(why(construct, "parameters other than plain positional ones"));
    }
    if a.args.iter().any(|p| p.default.is_some()) {
        return Err(why(construct, "parameters with defaults"));
    }
    if stores.get(f.name.as_str()).copied().unwrap_or(0) > 1 {
        return Err(why(construct, "the name is defined more than once"));
    }
    let returns = |stmts: &[Stmt]| {
        fn walk(stmts: &[Stmt]) -> usize {
            stmts
                .iter()
                .map(|s| match s {
                    Stmt::Return(_) => 1,
                    Stmt::If(i) => walk(&i.body) + walk(&i.orelse),
                    Stmt::For(f) => walk(&f.body) + walk(&f.orelse),
                    Stmt::While(w) => walk(&w.body) + walk(&w.orelse),
                    Stmt::With(w) => walk(&w.body),
                    Stmt::Try(t) => walk(&t.body) + walk(&t.orelse) + walk(&t.finalbody),
                    _ => 0,
                })
                .sum()
        }
        walk(stmts)
    };
    let trailing = usize::from(matches!(f.body.last(), Some(Stmt::Return(_))));
    if returns(&f.body) > trailing {
        return Err(why(construct, "a `return` before the end of the body"));
    }
    Ok(())
}

/// An identifier of the statement (a variable, function, attribute,
/// keyword or imported name) that holds a `${…}` placeholder: Nix pasted
/// Python source there (`${import ./helpers.nix {…}}machine.start()`), so
/// the statement, and what the pasted code does, is not known statically.
/// Strings holding placeholders are fine: they are values.
fn generated_name(stmt: &Stmt) -> Option<String> {
    use rustpython_parser::ast::Visitor;
    struct Names(Option<String>);
    impl Names {
        fn see(&mut self, name: &str) {
            if self.0.is_none() && name.contains(PLACEHOLDER_PREFIX) {
                self.0 = Some(name.to_string());
            }
        }
    }
    impl Visitor for Names {
        fn visit_expr_name(&mut self, node: ast::ExprName) {
            self.see(node.id.as_str());
        }
        fn visit_expr_attribute(&mut self, node: ast::ExprAttribute) {
            self.see(node.attr.as_str());
            self.generic_visit_expr_attribute(node);
        }
        fn visit_keyword(&mut self, node: ast::Keyword) {
            if let Some(arg) = &node.arg {
                self.see(arg.as_str());
            }
            self.generic_visit_keyword(node);
        }
        fn visit_stmt_function_def(&mut self, node: ast::StmtFunctionDef) {
            self.see(node.name.as_str());
            for p in &node.args.args {
                self.see(p.def.arg.as_str());
            }
            self.generic_visit_stmt_function_def(node);
        }
        fn visit_alias(&mut self, node: ast::Alias) {
            self.see(node.name.as_str());
            if let Some(a) = &node.asname {
                self.see(a.as_str());
            }
        }
    }
    let mut v = Names(None);
    v.visit_stmt(stmt.clone());
    v.0
}

/// Whether the arguments of a call call anything.
fn has_call_inside(expr: &Expr) -> bool {
    match expr {
        Expr::Call(c) => c.args.iter().any(has_call) || c.keywords.iter().any(|k| has_call(&k.value)),
        other => has_call(other),
    }
}

/// Whether an expression calls anything.
fn has_call(expr: &Expr) -> bool {
    use rustpython_parser::ast::Visitor;
    struct Calls(bool);
    impl Visitor for Calls {
        fn visit_expr_call(&mut self, _: ast::ExprCall) {
            self.0 = true;
        }
    }
    let mut v = Calls(false);
    v.visit_expr(expr.clone());
    v.0
}

/// How often each name is assigned (targets, loop variables, `def`s,
/// imports) anywhere in a statement.
fn collect_stores(stmt: &Stmt, out: &mut BTreeMap<String, usize>) {
    use rustpython_parser::ast::Visitor;
    struct Stores<'a>(&'a mut BTreeMap<String, usize>);
    impl Visitor for Stores<'_> {
        fn visit_expr_name(&mut self, node: ast::ExprName) {
            if node.ctx == ast::ExprContext::Store {
                *self.0.entry(node.id.to_string()).or_insert(0) += 1;
            }
        }
        fn visit_stmt_function_def(&mut self, node: ast::StmtFunctionDef) {
            *self.0.entry(node.name.to_string()).or_insert(0) += 1;
            for p in &node.args.args {
                *self.0.entry(p.def.arg.to_string()).or_insert(0) += 1;
            }
            self.generic_visit_stmt_function_def(node);
        }
        fn visit_stmt_global(&mut self, node: ast::StmtGlobal) {
            for n in &node.names {
                *self.0.entry(n.to_string()).or_insert(0) += 2;
            }
        }
        fn visit_stmt_aug_assign(&mut self, node: ast::StmtAugAssign) {
            if let Expr::Name(n) = &*node.target {
                *self.0.entry(n.id.to_string()).or_insert(0) += 2;
            }
            self.generic_visit_stmt_aug_assign(node);
        }
    }
    Stores(out).visit_stmt(stmt.clone());
}

/// Every variable read in a statement, with its offset (for "used later").
fn collect_loads_stmt(stmt: &Stmt, out: &mut Vec<(String, usize)>) {
    use rustpython_parser::ast::Visitor;
    struct Loads<'a>(&'a mut Vec<(String, usize)>);
    impl Visitor for Loads<'_> {
        fn visit_expr_name(&mut self, node: ast::ExprName) {
            self.0.push((node.id.to_string(), u32::from(node.range.start()) as usize));
        }
    }
    Loads(out).visit_stmt(stmt.clone());
}

fn collect_loads_expr(expr: &Expr, out: &mut Vec<(String, usize)>) {
    use rustpython_parser::ast::Visitor;
    struct Loads<'a>(&'a mut Vec<(String, usize)>);
    impl Visitor for Loads<'_> {
        fn visit_expr_name(&mut self, node: ast::ExprName) {
            self.0.push((node.id.to_string(), u32::from(node.range.start()) as usize));
        }
    }
    Loads(out).visit_expr(expr.clone());
}

#[cfg(test)]
mod tests_support {
    use super::*;

    pub fn script(text: &str) -> ScriptSource {
        ScriptSource {
            text: text.into(),
            interpolations: vec!["pkgs.hello".into()],
            first_line: 10,
            line_map: Vec::new(),
            is_function: false,
            resolved: Vec::new(),
            scope: Vec::new(),
        }
    }

    pub fn keys(items: &[Item]) -> Vec<String> {
        items
            .iter()
            .map(|i| match i {
                Item::Step { key, .. } => key.to_string(),
                Item::Subtest { items, .. } => format!("subtest[{}]", keys(items).join(",")),
                Item::Todo(l) => format!("todo:{}", l.construct),
                Item::Python { leftover, .. } => format!("python:{}", leftover.construct),
                Item::Def { .. } => "def".into(),
                Item::Comment(_) => "#".into(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::tests_support::*;
    use super::*;

    #[test]
    fn outputs_used_later_are_not_converted() {
        let s = script("out = m.succeed('a')\nassert 'x' in out\nm.succeed(out)\n");
        let conv = convert(&s, &["m".into()], &BTreeMap::new(), false).unwrap();
        assert_eq!(keys(&conv.items), ["todo:assignment", "todo:Machine.succeed"]);
        assert_eq!(conv.items.len(), 2);
    }

    #[test]
    fn a_check_the_vocabulary_lacks_stays() {
        // A check on two commands' joint output has no expectation.
        let s = script(
            "out = m.succeed('a')\nassert 'x' not in out\nassert 'y' in m.succeed('b')\nassert 'p' in m.succeed('c') and 'q' in m.succeed('c')\n",
        );
        let conv = convert(&s, &["m".into()], &BTreeMap::new(), false).unwrap();
        assert_eq!(keys(&conv.items), ["succeed", "succeed", "todo:assert"]);
    }

    #[test]
    fn several_checks_on_one_output_become_lists() {
        let s = script(
            "out = m.succeed('a')\nassert 'x' in out\nassert 'y' in out\nassert 'z' not in out\nassert 'w' not in m.succeed('b')\n",
        );
        let conv = convert(&s, &["m".into()], &BTreeMap::new(), false).unwrap();
        let Item::Step { extra, .. } = &conv.items[0] else { panic!("{:?}", conv.items) };
        let str = |s: &str| NixValue::Str(s.into());
        assert_eq!(
            extra,
            &[
                ("expect.contains".to_string(), NixValue::List(vec![str("x"), str("y")])),
                ("expect.notContains".to_string(), str("z")),
            ]
        );
        let Item::Step { extra, .. } = &conv.items[1] else { panic!("{:?}", conv.items) };
        assert_eq!(extra, &[("expect.notContains".to_string(), str("w"))]);
        // Two patterns, or a Nix value in a list, stay as they were.
        let s = script(
            "import re\nout = m.succeed('a')\nassert re.search('x', out)\nassert re.search('y', out)\nout2 = m.succeed('b')\nassert 'q' in out2\nassert \"__nixvm_interp_0__\" in out2\n",
        );
        let carried = BTreeMap::from([(0, Ok(()))]);
        let conv = convert(&s, &["m".into()], &carried, false).unwrap();
        assert_eq!(keys(&conv.items), ["todo:assert", "todo:assert"]);
        let Item::Todo(l) = &conv.items[1] else { panic!() };
        assert!(l.why.contains("only literal lists"), "{}", l.why);
    }

    #[test]
    fn patterns_the_two_drivers_read_differently_stay_python() {
        // Issue 11: `\d` and `\s` are refused in descriptions (Rust and
        // Python classify non-ASCII characters differently).
        let s = script(
            "import re\nout = m.succeed('a')\nassert re.search(r'\\d+', out)\nt.assertRegex(m.succeed('b'), r'[0-9]+')\nm.wait_for_console_text(r'login:\\s')\n",
        );
        let conv = convert(&s, &["m".into()], &BTreeMap::new(), false).unwrap();
        assert_eq!(keys(&conv.items), ["todo:assert", "succeed", "todo:Machine.wait_for_console_text"]);
        let Item::Todo(l) = &conv.items[0] else { panic!() };
        assert!(l.why.contains("`\\d` is not supported by both"), "{}", l.why);
    }

    #[test]
    fn late_first_boot_and_interpolations_stay() {
        let s = script("a.succeed('x')\nb.start()\nb.succeed(\"__nixvm_interp_0__/bin/hello\")\n");
        let conv = convert(&s, &["a".into(), "b".into()], &BTreeMap::new(), false).unwrap();
        assert_eq!(keys(&conv.items), ["succeed", "todo:Machine.start", "todo:Machine.succeed"]);
        let Item::Todo(l) = &conv.items[2] else { panic!() };
        assert_eq!(l.line, 12);
        assert!(l.why.contains("${pkgs.hello}"), "{}", l.why);
    }

    #[test]
    fn loops_over_literal_lists_unroll() {
        let s = script(
            "for u in ['a.service', 'b.service']:\n    m.wait_for_unit(u)\nfor x in range(3):\n    m.succeed('x')\n",
        );
        let conv = convert(&s, &["m".into()], &BTreeMap::new(), false).unwrap();
        assert_eq!(keys(&conv.items), ["waitForUnit", "waitForUnit", "todo:for loop"]);
    }

    #[test]
    fn deep_or_broken_scripts_are_errors_not_crashes() {
        let deep = script(&format!("m.succeed({}1{})\n", "(".repeat(1000), ")".repeat(1000)));
        assert!(
            convert(&deep, &["m".into()], &BTreeMap::new(), false).unwrap_err().message.contains("nested")
        );
        let broken = script("m.succeed(\n");
        assert!(
            convert(&broken, &["m".into()], &BTreeMap::new(), false)
                .unwrap_err()
                .message
                .contains("not valid Python")
        );
    }
}

#[cfg(test)]
mod more_tests {
    use super::tests_support::*;
    use super::*;

    #[test]
    fn constants_and_simple_functions_are_folded() {
        let s = script(
            "UNIT = 'web.service'\ndef check(path):\n    m.succeed(f'test -e {path}')\n    return m.succeed('true')\nm.wait_for_unit(UNIT)\ncheck('/etc')\nprint(m.succeed('uname'))\nN = 1\nN = 2\nm.succeed(f'{N}')\n",
        );
        let conv = convert(&s, &["m".into()], &BTreeMap::new(), false).unwrap();
        assert_eq!(
            keys(&conv.items),
            [
                "waitForUnit",
                "succeed",
                "succeed",
                "succeed",
                "todo:assignment",
                "todo:assignment",
                "todo:Machine.succeed"
            ]
        );
    }
}

#[cfg(test)]
mod unittest_checks {
    use super::tests_support::*;
    use super::*;

    #[test]
    fn the_drivers_t_assertions_are_expectations() {
        let s = script(
            "out = m.succeed('a')\nprint(out)\nt.assertIn('x', out)\nt.assertNotIn('y', out, 'msg')\nt.assertRegex(m.succeed('b'), 'z+')\nm.wait_for_open_port('8080')\nm.wait_for_open_port('08')\n",
        );
        let conv = convert(&s, &["m".into()], &BTreeMap::new(), false).unwrap();
        assert_eq!(
            keys(&conv.items),
            ["succeed", "succeed", "waitForOpenPort", "todo:Machine.wait_for_open_port"]
        );
        let Item::Step { extra, .. } = &conv.items[0] else { panic!() };
        let str = |s: &str| NixValue::Str(s.into());
        assert_eq!(
            extra,
            &[("expect.contains".to_string(), str("x")), ("expect.notContains".to_string(), str("y"))]
        );
        let Item::Step { value, .. } = &conv.items[2] else { panic!() };
        assert_eq!(value, &NixValue::Int(8080));
        // A script that binds `t` itself is not using the driver's TestCase.
        let s = script("t = 1\nt.assertIn('x', m.succeed('a'))\n");
        let conv = convert(&s, &["m".into()], &BTreeMap::new(), false).unwrap();
        assert_eq!(keys(&conv.items), ["todo:t.assertIn"]);
    }

    #[test]
    fn python_source_pasted_by_nix_is_a_leftover() {
        for text in [
            "__nixvm_interp_0__m.start()\nm.succeed('a')\n",
            "__nixvm_interp_0__x = 'a'\nm.succeed('a')\n",
            "def __nixvm_interp_0__f():\n    pass\nm.succeed('a')\n",
            "m.__nixvm_interp_0__()\nm.succeed('a')\n",
        ] {
            let conv = convert(&script(text), &["m".into()], &BTreeMap::new(), false).unwrap();
            assert_eq!(keys(&conv.items), ["todo:Python code from Nix", "succeed"], "{text}");
        }
    }
}

#[cfg(test)]
mod python_steps {
    use super::tests_support::*;
    use super::*;

    fn kept(items: &[Item]) -> Vec<String> {
        let mut out = Vec::new();
        for item in items {
            match item {
                Item::Python { code, .. } => out.push(code.clone()),
                Item::Subtest { items, .. } => out.extend(kept(items)),
                _ => {}
            }
        }
        out
    }

    #[test]
    fn leftovers_become_python_with_the_values_they_read() {
        let s = script(
            "N = 'a'\nfor x in ['p', 'q']:\n    m.send_keys(f'{x}{N}')\nwith subtest('s'):\n    v = m.succeed('a')\n    m.succeed(v)\n",
        );
        let conv = convert(&s, &["m".into()], &BTreeMap::new(), true).unwrap();
        assert_eq!(
            kept(&conv.items),
            [
                "N = \"a\"\nx = \"p\"\nm.send_keys(f'{x}{N}')",
                "N = \"a\"\nx = \"q\"\nm.send_keys(f'{x}{N}')",
                "v = m.succeed('a')",
                "m.succeed(v)",
            ]
        );
    }

    #[test]
    fn lines_that_would_change_stay_comments() {
        // A triple-quoted string in a nested block would gain indentation;
        // a Nix value cannot be carried; a statement sharing its line.
        let s = script(
            "with subtest('s'):\n    m.send_keys('''a\n    b''')\nm.send_keys(\"__nixvm_interp_0__\")\nm.succeed('a'); m.send_keys('b')\n",
        );
        let conv = convert(&s, &["m".into()], &BTreeMap::new(), true).unwrap();
        assert!(kept(&conv.items).is_empty(), "{:?}", conv.items);
        let Item::Subtest { items, .. } = &conv.items[0] else { panic!() };
        let Item::Todo(l) = &items[0] else { panic!("{items:?}") };
        assert!(l.why.contains("not kept as a python step: a multi-line string"), "{}", l.why);
        // At the top level the same string moves nowhere: kept.
        let s = script("m.send_keys('''a\n    b''')\n");
        let conv = convert(&s, &["m".into()], &BTreeMap::new(), true).unwrap();
        assert_eq!(kept(&conv.items), ["m.send_keys('''a\n    b''')"]);
    }
}

#[cfg(test)]
mod capture_tests {
    use super::tests_support::*;
    use super::*;

    #[test]
    fn stripped_outputs_used_later_become_checked_captures() {
        let s = script(
            "a = m.succeed('x').strip()\nm.succeed(f'use {a} \"{a}\"')\nm.succeed(f\"echo '{a}'\")\nm.wait_for_unit(a)\nb = m.succeed('y')\nm.succeed(f'{b}')\nc = m.wait_until_succeeds('z').strip()\nm.succeed(c)\nd = m.succeed('w').strip()\n",
        );
        let conv = convert(&s, &["m".into()], &BTreeMap::new(), false).unwrap();
        assert_eq!(
            keys(&conv.items),
            [
                "succeed",
                "succeed",
                "todo:Machine.succeed",
                "todo:Machine.wait_for_unit",
                "todo:assignment",
                "todo:Machine.succeed",
                "todo:assignment",
                "todo:Machine.succeed",
                "succeed"
            ]
        );
        let Item::Step { extra, .. } = &conv.items[0] else { panic!() };
        assert_eq!(extra[0], ("capture".to_string(), NixValue::Str("A".into())));
        assert_eq!(extra[1], ("expect.matches".to_string(), NixValue::Str(PLAIN_CAPTURE.into())));
        let Item::Step { value, .. } = &conv.items[1] else { panic!() };
        assert_eq!(value, &NixValue::Str("use ${A} \"${A}\"".into()));
        // Not used later: no capture.
        let Item::Step { extra, .. } = &conv.items[8] else { panic!() };
        assert!(extra.is_empty());
    }

    #[test]
    fn the_shell_must_expand_a_capture_where_it_was_pasted() {
        let m = |n: &str| format!("{CAPTURE_OPEN}{n}{CAPTURE_CLOSE}");
        assert_eq!(shell_captures(&format!("a {}b", m("X"))).unwrap(), "a ${X}b");
        assert_eq!(shell_captures(&format!("\"'{}'\"", m("X"))).unwrap(), "\"'${X}'\"");
        assert!(shell_captures(&format!("'a {}'", m("X"))).is_err());
        assert!(shell_captures(&format!("\\{}", m("X"))).is_err());
        assert_eq!(shell_captures(&format!("'a' {}", m("X"))).unwrap(), "'a' ${X}");
    }
}

#[cfg(test)]
mod captures_and_python_steps {
    use super::tests_support::*;
    use super::*;

    #[test]
    fn a_python_step_never_reads_a_captured_output() {
        let s = script(
            "a = m.succeed('x').strip()\nb = f'{a}/y'\nm.succeed(f'cat {b}')\nm.send_monitor_command(a)\nm.send_monitor_command(b)\n",
        );
        let conv = convert(&s, &["m".into()], &BTreeMap::new(), true).unwrap();
        assert_eq!(
            keys(&conv.items),
            ["succeed", "succeed", "todo:Machine.send_monitor_command", "todo:Machine.send_monitor_command"]
        );
        let Item::Todo(l) = &conv.items[3] else { panic!() };
        assert!(l.why.contains("a captured output"), "{}", l.why);
    }
}
