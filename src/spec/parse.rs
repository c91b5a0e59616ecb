//! Description files (Nix source) → [`TestSpec`], with a diagnostic for every
//! construct that is not static data and every mistake in the format.
//!
//! Two stages: [`value::lower_root`] turns the rnix AST into a spanned value
//! tree (non-data becomes `Opaque`, node modules are skipped), then
//! [`convert`] checks that tree against the format, collecting every problem
//! instead of stopping at the first. Evaluator output ([`from_json`]) goes
//! through the same converter, so both paths accept exactly the same format.
//!
//! Checks that need only one file happen here, including node names of
//! steps (they need the exact spans); cross-file and flake checks are in
//! [`crate::spec::validate`].

use std::collections::BTreeMap;
use std::path::Path;

use rnix::SyntaxKind;

use crate::diagnostic::{Diagnostic, FileId, Span};
pub use crate::spec::names::{valid_node_name, valid_test_name};
use crate::spec::validate::did_you_mean;
use crate::spec::value::{self, Entry, Kind, Value};
use crate::spec::{ACTION_KEYS, Action, Backend, Expect, Step, TestSpec, names, pattern};

/// Keys of the top-level attribute set.
pub const TOP_KEYS: &[&str] =
    &["name", "description", "nodes", "modules", "systems", "backend", "timeout", "steps"];
/// Keys every step may have besides its action.
pub const STEP_MODIFIERS: &[&str] = &["node", "timeout"];
/// Keys that refine one action, with the actions they belong to.
pub const STEP_SIBLINGS: &[(&str, &[&str])] = &[
    ("user", &["waitForUnit"]),
    ("addr", &["waitForOpenPort", "waitForClosedPort"]),
    ("expect", &["succeed", "waitUntilSucceeds"]),
    ("targetDir", &["copyFromVm"]),
    ("steps", &["subtest"]),
];
pub const EXPECT_KEYS: &[&str] = &["contains", "equals", "matches", "exitCode"];
pub const HTTP_KEYS: &[&str] = &["url", "status", "contains"];
/// Systems NixOS VM tests can be generated for.
pub const KNOWN_SYSTEMS: &[&str] = &[
    "x86_64-linux",
    "aarch64-linux",
    "i686-linux",
    "riscv64-linux",
    "armv7l-linux",
    "armv6l-linux",
    "powerpc64le-linux",
    "loongarch64-linux",
];

/// Parses one description. Returns `None` when the file is too broken to
/// describe a test (syntax errors, not an attribute set); otherwise a spec
/// (possibly incomplete: bad steps are left out) and every problem found.
pub fn parse(file: FileId, rel_path: &Path, text: &str) -> (Option<TestSpec>, Vec<Diagnostic>) {
    // rnix stops at 512 levels of nesting, but in a debug build that already
    // needs more stack than a default thread has; parse on a thread whose
    // stack fits the deepest tree rnix accepts.
    on_parse_stack(|| parse_here(file, rel_path, text))
}

/// One description to parse: its file id, path relative to the flake, text.
pub type ParseInput<'a> = (FileId, &'a Path, &'a str);

/// Parses many descriptions on a few big-stack worker threads (one per core,
/// at most one per file), keeping the input order. Cheaper than [`parse`]
/// per file, which starts a thread each time: `nixvm-gen check` runs on
/// every commit and must stay fast with hundreds of descriptions.
pub fn parse_many(inputs: &[ParseInput<'_>]) -> Vec<(Option<TestSpec>, Vec<Diagnostic>)> {
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, inputs.len().max(1));
    let chunk = inputs.len().div_ceil(workers).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = inputs
            .chunks(chunk)
            .map(|part| {
                let job = move || part.iter().map(|&(f, p, t)| parse_here(f, p, t)).collect::<Vec<_>>();
                (
                    part,
                    std::thread::Builder::new()
                        .name("spec-parse".into())
                        .stack_size(PARSE_STACK_BYTES)
                        .spawn_scoped(scope, job),
                )
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|(part, handle)| match handle {
                Ok(h) => h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
                Err(_) => part.iter().map(|&(f, p, t)| parse(f, p, t)).collect(),
            })
            .collect()
    })
}

/// Enough for rnix's maximum nesting depth in unoptimised builds.
const PARSE_STACK_BYTES: usize = 64 << 20;

/// Brackets nested deeper than this are refused before parsing: rnix's
/// error recovery on very deep input takes minutes.
const MAX_BRACKET_DEPTH: usize = 100;

/// The first bracket (`[`, `{`, `(`, `${`, string start) that nests deeper
/// than [`MAX_BRACKET_DEPTH`], found by a linear scan of the tokens.
fn too_deep(file: FileId, text: &str) -> Option<Span> {
    use SyntaxKind::*;
    let mut depth = 0usize;
    let mut offset = 0usize;
    for (kind, tok) in rnix::tokenize(text) {
        match kind {
            TOKEN_L_BRACE | TOKEN_L_BRACK | TOKEN_L_PAREN | TOKEN_INTERPOL_START | TOKEN_STRING_START => {
                depth += 1;
                if depth > MAX_BRACKET_DEPTH {
                    let start = u32::try_from(offset).unwrap_or(u32::MAX);
                    let end = u32::try_from(offset + tok.len()).unwrap_or(u32::MAX);
                    return Some(Span { file, start, end });
                }
            }
            TOKEN_R_BRACE | TOKEN_R_BRACK | TOKEN_R_PAREN | TOKEN_INTERPOL_END | TOKEN_STRING_END => {
                depth = depth.saturating_sub(1);
            }
            _ => {}
        }
        offset += tok.len();
    }
    None
}

fn parse_here(file: FileId, rel_path: &Path, text: &str) -> (Option<TestSpec>, Vec<Diagnostic>) {
    if let Some(span) = too_deep(file, text) {
        let d = Diagnostic::error(
            "nix_syntax",
            Some(span),
            format!("brackets are nested more than {MAX_BRACKET_DEPTH} levels deep"),
        )
        .with_label("too deep")
        .with_hint("a description is a flat list of steps; move deep structures into a separate Nix file");
        return (None, vec![d]);
    }
    let parsed = rnix::Root::parse(text);
    if let Some(err) = parsed.errors().first() {
        // Later rnix errors are mostly consequences of the first one.
        return (None, vec![syntax_error(file, err, text.len())]);
    }
    let mut diags = Vec::new();
    let Some(expr) = parsed.tree().expr() else {
        let d = Diagnostic::error("nix_syntax", Some(whole(file, text)), "the file holds no expression")
            .with_hint("a description is an attribute set: `{ nodes.machine = { … }; steps = [ … ]; }`");
        return (None, vec![d]);
    };
    let root = value::lower_root(file, &expr, &mut diags);
    let spec = convert(rel_path, &root, &mut diags);
    diags.sort_by_key(|d| d.span.map(|s| (s.start, s.end)));
    (spec, diags)
}

/// Converts evaluator output: the description evaluated to JSON with each
/// `nodes.<name>` replaced by `null`. JSON has no positions, so every
/// diagnostic points at the start of the file and steps have no span (the
/// generated code then names only the file, not a misleading line 1). Use
/// [`from_json_with_source`] when the file's text is at hand.
pub fn from_json(
    file: FileId,
    rel_path: &Path,
    value: &serde_json::Value,
) -> (Option<TestSpec>, Vec<Diagnostic>) {
    let unknown = Span { file, start: 0, end: 0 };
    let (mut spec, diags) = from_json_spanned(rel_path, value, unknown);
    if let Some(spec) = &mut spec {
        forget_spans(&mut spec.steps, unknown);
    }
    (spec, diags)
}

/// [`from_json`] for a file whose source `text` is known: values that the
/// static parse could place (e.g. the `steps` attribute, or each step of a
/// literal list whose items are computed) get those spans, for step comments
/// and diagnostics; the rest behave as in [`from_json`].
pub fn from_json_with_source(
    file: FileId,
    rel_path: &Path,
    text: &str,
    value: &serde_json::Value,
) -> (Option<TestSpec>, Vec<Diagnostic>) {
    let unknown = Span { file, start: 0, end: 0 };
    let located = on_parse_stack(|| static_tree(file, text));
    let root = value::from_json_located(value, located.as_ref(), unknown);
    let mut diags = Vec::new();
    let mut spec = convert(rel_path, &root, &mut diags);
    if let Some(spec) = &mut spec {
        forget_spans(&mut spec.steps, unknown);
    }
    (spec, diags)
}

/// The static value tree of `text`, if it parses (its diagnostics are
/// dropped: the evaluated value is what counts).
fn static_tree(file: FileId, text: &str) -> Option<Value> {
    if too_deep(file, text).is_some() {
        return None;
    }
    let parsed = rnix::Root::parse(text);
    if !parsed.errors().is_empty() {
        return None;
    }
    let expr = parsed.tree().expr()?;
    Some(value::lower_root(file, &expr, &mut Vec::new()))
}

/// Runs `job` on a thread with [`PARSE_STACK_BYTES`] of stack (see
/// [`parse`]); here when no thread can be started.
fn on_parse_stack<T: Send>(job: impl Fn() -> T + Sync) -> T {
    let job = &job;
    std::thread::scope(|scope| {
        let worker = std::thread::Builder::new()
            .name("spec-parse".into())
            .stack_size(PARSE_STACK_BYTES)
            .spawn_scoped(scope, job);
        match worker {
            Ok(handle) => handle.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            Err(_) => job(),
        }
    })
}

/// Clears step spans equal to `unknown`, recursively: no position is better
/// than a made-up one.
fn forget_spans(steps: &mut [Step], unknown: Span) {
    for step in steps {
        if step.span == Some(unknown) {
            step.span = None;
        }
        if let Action::Subtest { steps, .. } = &mut step.action {
            forget_spans(steps, unknown);
        }
    }
}

/// [`from_json`] with an explicit span for every value (e.g. the whole file).
pub fn from_json_spanned(
    rel_path: &Path,
    value: &serde_json::Value,
    span: Span,
) -> (Option<TestSpec>, Vec<Diagnostic>) {
    let root = value::from_json(value, span);
    let mut diags = Vec::new();
    let spec = convert(rel_path, &root, &mut diags);
    (spec, diags)
}

fn whole(file: FileId, text: &str) -> Span {
    Span { file, start: 0, end: u32::try_from(text.len()).unwrap_or(u32::MAX) }
}

fn syntax_error(file: FileId, err: &rnix::ParseError, len: usize) -> Diagnostic {
    use rnix::ParseError as E;
    let end = u32::try_from(len).unwrap_or(u32::MAX);
    let eof = Span { file, start: end, end };
    let (span, message, label) = match err {
        E::Unexpected(r) => (Span::new(file, *r), "unexpected input".to_string(), "not valid Nix here"),
        E::UnexpectedExtra(r) => (
            Span::new(file, *r),
            "unexpected text after the end of the expression".to_string(),
            "the description ends before this",
        ),
        E::UnexpectedWanted(got, r, wanted) => (
            Span::new(file, *r),
            format!("expected {}, found {}", wanted_list(wanted), kind_name(*got)),
            "unexpected here",
        ),
        E::UnexpectedDoubleBind(r) => {
            (Span::new(file, *r), "a function pattern is bound twice".to_string(), "second binding")
        }
        E::UnexpectedEOF => (eof, "unexpected end of file".to_string(), "the file ends here"),
        E::UnexpectedEOFWanted(wanted) => {
            (eof, format!("unexpected end of file, expected {}", wanted_list(wanted)), "the file ends here")
        }
        E::DuplicatedArgs(r, name) => {
            (Span::new(file, *r), format!("function argument `{name}` is listed twice"), "duplicate")
        }
        E::RecursionLimitExceeded => {
            (Span { file, start: 0, end: 0 }, "expression nested too deeply".to_string(), "in this file")
        }
        // rnix may add variants; report them generically.
        #[allow(unreachable_patterns)]
        other => (Span { file, start: 0, end: 0 }, format!("syntax error: {other}"), "in this file"),
    };
    Diagnostic::error("nix_syntax", Some(span), format!("Nix syntax error: {message}"))
        .with_label(label)
        .with_hint("fix the syntax; `nix-instantiate --parse <file>` shows Nix's own reading")
}

fn wanted_list(kinds: &[SyntaxKind]) -> String {
    let mut names: Vec<String> = kinds.iter().map(|k| kind_name(*k)).collect();
    names.dedup();
    match names.len() {
        0 => "something else".into(),
        1 => names.remove(0),
        _ => {
            let last = names.pop().unwrap_or_default();
            format!("{} or {last}", names.join(", "))
        }
    }
}

fn kind_name(kind: SyntaxKind) -> String {
    use SyntaxKind::*;
    let s = match kind {
        TOKEN_SEMICOLON => "`;`",
        TOKEN_ASSIGN => "`=`",
        TOKEN_L_BRACE => "`{`",
        TOKEN_R_BRACE | TOKEN_INTERPOL_END => "`}`",
        TOKEN_L_BRACK => "`[`",
        TOKEN_R_BRACK => "`]`",
        TOKEN_L_PAREN => "`(`",
        TOKEN_R_PAREN => "`)`",
        TOKEN_COLON => "`:`",
        TOKEN_COMMA => "`,`",
        TOKEN_DOT => "`.`",
        TOKEN_IN => "`in`",
        TOKEN_THEN => "`then`",
        TOKEN_ELSE => "`else`",
        TOKEN_IDENT | NODE_IDENT => "a name",
        TOKEN_STRING_START | TOKEN_STRING_END => "a string quote",
        TOKEN_ERROR => "an invalid token",
        TOKEN_INTEGER | TOKEN_FLOAT => "a number",
        _ => return format!("`{kind:?}`").to_lowercase().replace("token_", "").replace("node_", ""),
    };
    s.to_string()
}

/// Steps are copied into the generated test, so they must be literals.
const STATIC_HINT: &str = "descriptions are copied into the generated test, so everything outside `nodes` must be \
                           literal data (strings, numbers, booleans, lists, attribute sets); move computation into \
                           a node module";
const EVAL_HINT: &str = "or let Nix evaluate the description: `nixvm-gen --eval generate`";

/// What a value should be, for wrong-type messages.
#[derive(Clone, Copy)]
enum Ty {
    Str,
    Int,
    Number,
    List,
    Attrs,
}

impl Ty {
    fn name(self) -> &'static str {
        match self {
            Ty::Str => "a string",
            Ty::Int => "an integer",
            Ty::Number => "a number",
            Ty::List => "a list",
            Ty::Attrs => "an attribute set",
        }
    }
    fn hint(self) -> &'static str {
        match self {
            Ty::Str => "write a string literal in double quotes, e.g. `\"…\"`",
            Ty::Int => "write a whole number without quotes",
            Ty::Number => "write a number without quotes, e.g. `30` or `1.5`",
            Ty::List => "write a list: `[ … ]`",
            Ty::Attrs => "write an attribute set: `{ … }`",
        }
    }
}

/// Values the stock driver passes to a shell unquoted.
#[derive(Clone, Copy)]
enum ShellWord {
    /// `user` of `waitForUnit` (`su -l <user>`).
    User,
    /// `copyFromVm` (`cp -r <source> …`).
    CopySource,
    /// `screenshot` (`pnmtopng … > <name>`).
    Screenshot,
}

/// A character for a label: visible characters in backquotes, others
/// (space, control characters) by name or escape.
fn shown_char(c: char) -> String {
    match c {
        ' ' => "a space".to_string(),
        '`' => "a backquote".to_string(),
        c if c.is_control() || c.is_whitespace() => format!("`{}`", c.escape_default()),
        c => format!("`{c}`"),
    }
}

/// The known nodes of the test being converted.
#[derive(Default)]
enum Nodes {
    /// `nodes` is missing or unreadable: node checks are skipped.
    #[default]
    Unknown,
    Known(BTreeMap<String, Span>),
}

struct Conv<'a> {
    diags: &'a mut Vec<Diagnostic>,
    nodes: Nodes,
}

/// Checks the value tree against the description format.
fn convert(rel_path: &Path, root: &Value, diags: &mut Vec<Diagnostic>) -> Option<TestSpec> {
    let entries = match &root.kind {
        Kind::Attrs(entries) => entries,
        Kind::Lambda => {
            diags.push(
                Diagnostic::error(
                    "top_level_function",
                    Some(root.span),
                    "a description must be an attribute set, not a function",
                )
                .with_label("this is a function")
                .with_hint(
                    "remove the `{ … }:` header; node modules receive `pkgs`, `lib`, … themselves: \
                                `nodes.machine = { pkgs, ... }: { … };`",
                ),
            );
            return None;
        }
        _ => {
            let mut c = Conv { diags, nodes: Nodes::Unknown };
            c.wrong_type(root, Ty::Attrs, "the description");
            return None;
        }
    };
    let mut c = Conv { diags, nodes: Nodes::Unknown };
    let stem = rel_path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let mut spec = TestSpec {
        name: stem.clone(),
        name_span: None,
        file: rel_path.to_path_buf(),
        description: None,
        nodes: BTreeMap::new(),
        modules: None,
        systems: None,
        backend: Backend::default(),
        timeout: None,
        steps: Vec::new(),
    };
    // Nodes first: steps are checked against them.
    match entries.iter().find(|e| e.key == "nodes") {
        Some(e) => {
            if let Some(nodes) = c.nodes(&e.value) {
                spec.nodes = nodes.clone();
                c.nodes = Nodes::Known(nodes);
            }
        }
        None => c.diags.push(
            Diagnostic::error("missing_nodes", Some(open_brace(root.span)), "the description has no `nodes`")
                .with_label("in this attribute set")
                .with_hint("add the machines of the test: `nodes.machine = { pkgs, ... }: { … };`"),
        ),
    }
    let mut saw_steps = false;
    let mut saw_name = false;
    for e in entries {
        let v = &e.value;
        match e.key.as_str() {
            "nodes" => {}
            "name" => {
                saw_name = true;
                if let Some(name) = c.str(v, "`name`") {
                    if !valid_test_name(&name) {
                        c.invalid_test_name(&name, v.span, false);
                    }
                    spec.name = name;
                    spec.name_span = Some(v.span);
                }
            }
            "description" => spec.description = c.str(v, "`description`"),
            "modules" => {
                spec.modules = c.list(v, "`modules`").map(|items| {
                    items
                        .iter()
                        .filter_map(|item| c.str(item, "a module name").map(|s| (s, item.span)))
                        .collect()
                });
            }
            "systems" => {
                let items = c.list(v, "`systems`");
                if items.is_some_and(<[Value]>::is_empty) {
                    c.empty_systems(v.span);
                }
                spec.systems =
                    items.map(|items| items.iter().filter_map(|item| c.system(item)).collect::<Vec<_>>());
            }
            "backend" => {
                if let Some(b) = c.str(v, "`backend`") {
                    match b.as_str() {
                        "rust" => spec.backend = Backend::Rust,
                        "python" => spec.backend = Backend::Python,
                        other => c.unknown_value(
                            "unknown_backend",
                            v.span,
                            &format!("unknown backend `{other}`"),
                            other,
                            &["rust", "python"],
                        ),
                    }
                }
            }
            "timeout" => {
                if let Some(t) = c.int(v, "`timeout`") {
                    match u64::try_from(t) {
                        Ok(t) if t > 0 => spec.timeout = Some(t),
                        _ => c.bad_timeout(v.span, &t.to_string()),
                    }
                }
            }
            "steps" => {
                saw_steps = true;
                if let Some(items) = c.list(v, "`steps`") {
                    if items.is_empty() {
                        c.empty_steps(v.span, "the test");
                    }
                    spec.steps = c.steps(items);
                }
            }
            other => c.unknown_key("unknown_top_level_key", e, TOP_KEYS, &top_key_hint(other)),
        }
    }
    if !saw_name && !valid_test_name(&stem) {
        let span = open_brace(root.span);
        c.invalid_test_name(&stem, span, true);
    }
    if !saw_steps {
        c.diags.push(
            Diagnostic::error("missing_steps", Some(open_brace(root.span)), "the description has no `steps`")
                .with_label("in this attribute set")
                .with_hint("add what the test does: `steps = [ { waitForUnit = \"multi-user.target\"; } ];`"),
        );
    }
    Some(spec)
}

/// Extra advice for well-known wrong top-level keys.
fn top_key_hint(key: &str) -> String {
    match key {
        "testScript" => "nixvm-gen writes the test script from `steps`; describe the test as steps".into(),
        "machine" | "machines" => "define machines under `nodes`: `nodes.machine = { … };`".into(),
        _ => format!("the top-level keys are {}", code_list(TOP_KEYS)),
    }
}

/// The first character of a span (for "in this attribute set" labels that
/// should not underline a whole file).
fn open_brace(span: Span) -> Span {
    Span { end: span.start.saturating_add(1).min(span.end.max(span.start)), ..span }
}

pub(crate) fn code_list(items: &[&str]) -> String {
    items.iter().map(|i| format!("`{i}`")).collect::<Vec<_>>().join(", ")
}

impl Conv<'_> {
    // ----- generic shape checks -----

    fn wrong_type(&mut self, v: &Value, ty: Ty, what: &str) {
        let d = match &v.kind {
            Kind::Invalid => return,
            Kind::Opaque { why } => Diagnostic::error(
                "not_static",
                Some(v.span),
                format!("{what} is not plain data: it is {why}"),
            )
            .with_label("not static data")
            .with_hint(STATIC_HINT)
            .with_hint(EVAL_HINT),
            other => Diagnostic::error(
                "wrong_type",
                Some(v.span),
                format!("{what} must be {}, found {}", ty.name(), other.describe()),
            )
            .with_label(format!("expected {}", ty.name()))
            .with_hint(ty.hint()),
        };
        self.diags.push(d);
    }

    fn str(&mut self, v: &Value, what: &str) -> Option<String> {
        match &v.kind {
            Kind::Str(s) => Some(s.clone()),
            _ => {
                self.wrong_type(v, Ty::Str, what);
                None
            }
        }
    }

    fn int(&mut self, v: &Value, what: &str) -> Option<i64> {
        match &v.kind {
            Kind::Int(i) => Some(*i),
            _ => {
                self.wrong_type(v, Ty::Int, what);
                None
            }
        }
    }

    fn number(&mut self, v: &Value, what: &str) -> Option<f64> {
        match &v.kind {
            Kind::Int(i) => Some(*i as f64),
            Kind::Float(f) => Some(*f),
            _ => {
                self.wrong_type(v, Ty::Number, what);
                None
            }
        }
    }

    fn list<'v>(&mut self, v: &'v Value, what: &str) -> Option<&'v [Value]> {
        match &v.kind {
            Kind::List(items) => Some(items),
            _ => {
                self.wrong_type(v, Ty::List, what);
                None
            }
        }
    }

    fn attrs<'v>(&mut self, v: &'v Value, what: &str) -> Option<&'v [Entry]> {
        match &v.kind {
            Kind::Attrs(entries) => Some(entries),
            _ => {
                self.wrong_type(v, Ty::Attrs, what);
                None
            }
        }
    }

    fn unknown_key(&mut self, code: &'static str, e: &Entry, known: &[&str], fallback_hint: &str) {
        let (label, hint) = match did_you_mean(&e.key, known.iter().copied()) {
            Some(s) => (format!("did you mean `{s}`?"), format!("replace `{}` with `{s}`", e.key)),
            None => ("unknown key".to_string(), fallback_hint.to_string()),
        };
        let place = match code {
            "unknown_step_key" => "in a step",
            "unknown_expect_key" => "in `expect`",
            "unknown_http_key" => "in `http`",
            _ => "in the description",
        };
        self.diags.push(
            Diagnostic::error(code, Some(e.key_span), format!("unknown key `{}` {place}", e.key))
                .with_label(label)
                .with_hint(hint),
        );
    }

    fn unknown_value(&mut self, code: &'static str, span: Span, message: &str, value: &str, known: &[&str]) {
        let label = match did_you_mean(value, known.iter().copied()) {
            Some(s) => format!("did you mean `{s}`?"),
            None => "unknown value".into(),
        };
        self.diags.push(
            Diagnostic::error(code, Some(span), message)
                .with_label(label)
                .with_hint(format!("use one of {}", code_list(known))),
        );
    }

    fn bad_timeout(&mut self, span: Span, shown: &str) {
        self.diags.push(
            Diagnostic::error(
                "invalid_timeout",
                Some(span),
                format!("timeout must be positive, found {shown}"),
            )
            .with_label("not a positive number of seconds")
            .with_hint("give the timeout in seconds, greater than zero (leave it out for the default)"),
        );
    }

    fn empty_steps(&mut self, span: Span, whose: &str) {
        self.diags.push(
            Diagnostic::error("empty_steps", Some(span), format!("{whose} has no steps"))
                .with_label("empty list")
                .with_hint("add at least one step, e.g. `{ waitForUnit = \"multi-user.target\"; }`"),
        );
    }

    fn invalid_test_name(&mut self, name: &str, span: Span, from_stem: bool) {
        let (message, hint) = if from_stem {
            (
                format!("the file name `{name}` is not a valid test name"),
                "rename the file or set `name = \"…\";` using letters, digits, `_`, `.`, `+`, `-`",
            )
        } else {
            (
                format!("`{name}` is not a valid test name"),
                "use letters, digits, `_`, `.`, `+`, `-` (not starting with `.`, `+` or `-`)",
            )
        };
        self.diags.push(
            Diagnostic::error("invalid_test_name", Some(span), message)
                .with_label("becomes `checks.<system>.<name>` and `vm-test-run-<name>`")
                .with_hint(hint),
        );
    }

    /// `systems = [ ]` is a warning, not an error: it is a way to park a
    /// test (it is still parsed and checked), but no `checks.<system>` runs
    /// it, which is almost never what was meant.
    fn empty_systems(&mut self, span: Span) {
        self.diags.push(
            Diagnostic::warning(
                "empty_systems",
                Some(span),
                "the test is generated for no system, so no check runs it",
            )
            .with_label("empty list")
            .with_hint(format!(
                "remove `systems` to use the defaults ({}), or list at least one system",
                code_list(crate::spec::DEFAULT_SYSTEMS)
            )),
        );
    }

    fn system(&mut self, v: &Value) -> Option<String> {
        let s = self.str(v, "a system")?;
        if KNOWN_SYSTEMS.contains(&s.as_str()) {
            return Some(s);
        }
        let mut d = Diagnostic::error("unknown_system", Some(v.span), format!("unknown system `{s}`"));
        d = match did_you_mean(&s, KNOWN_SYSTEMS.iter().copied()) {
            Some(close) => d.with_label(format!("did you mean `{close}`?")),
            None => d.with_label("not a Linux system NixOS VM tests run on"),
        };
        if s.ends_with("-darwin") {
            d = d.with_hint("NixOS VM tests run on Linux; macOS needs a Linux builder and `aarch64-linux`");
        }
        self.diags.push(d.with_hint(format!("use one of {}", code_list(KNOWN_SYSTEMS))));
        None
    }

    // ----- nodes -----

    fn nodes(&mut self, v: &Value) -> Option<BTreeMap<String, Span>> {
        let entries = self.attrs(v, "`nodes`")?;
        if entries.is_empty() {
            self.diags.push(
                Diagnostic::error("no_nodes", Some(v.span), "the test defines no nodes")
                    .with_label("empty")
                    .with_hint("add at least one machine: `nodes.machine = { pkgs, ... }: { … };`"),
            );
        }
        let mut out = BTreeMap::new();
        // Pythonized name → the node that has it, for clashes.
        let mut python_names: BTreeMap<String, &Entry> = BTreeMap::new();
        for e in entries {
            if valid_node_name(&e.key) {
                self.python_name(e, &mut python_names);
            } else {
                self.diags.push(
                    Diagnostic::error(
                        "invalid_node_name",
                        Some(e.key_span),
                        format!("`{}` is not a valid node name", e.key),
                    )
                    .with_label("used as host name and as a Python variable")
                    .with_hint("start with a letter or `_`; use only letters, digits, `_` and `-`"),
                );
            }
            out.insert(e.key.clone(), e.key_span);
        }
        Some(out)
    }

    /// Refuses node names that cannot be variables of the stock driver's
    /// testScript: keywords, driver globals, and two nodes that pythonize
    /// to the same name (`web-1`, `web_1`).
    fn python_name<'e>(&mut self, e: &'e Entry, seen: &mut BTreeMap<String, &'e Entry>) {
        let py = names::pythonize(&e.key);
        if let Some(why) = names::reserved_python_name(&py) {
            let shown =
                if py == e.key { format!("`{py}`") } else { format!("`{}` (in Python `{py}`)", e.key) };
            self.diags.push(
                Diagnostic::error(
                    "reserved_node_name",
                    Some(e.key_span),
                    format!("node name {shown} cannot be used in the test script"),
                )
                .with_label(why)
                .with_hint(
                    "the stock driver's testScript refers to each node as a Python variable; rename the node \
                     (e.g. `server`, `client`)",
                ),
            );
            return;
        }
        match seen.get(&py) {
            Some(first) => self.diags.push(
                Diagnostic::error(
                    "node_name_clash",
                    Some(e.key_span),
                    format!("nodes `{}` and `{}` are both `{py}` in the test script", first.key, e.key),
                )
                .with_label(format!("also `{py}` in Python"))
                .with_secondary(first.key_span, format!("`{py}` in Python"))
                .with_hint("the stock driver replaces `-` with `_` in node names; rename one of the nodes"),
            ),
            None => {
                seen.insert(py, e);
            }
        }
    }

    fn known_nodes(&self) -> Option<&BTreeMap<String, Span>> {
        match &self.nodes {
            Nodes::Known(map) => Some(map),
            Nodes::Unknown => None,
        }
    }

    /// Checks that a named node exists.
    fn check_node(&mut self, name: &str, span: Span) {
        let Some(nodes) = self.known_nodes() else { return };
        if nodes.contains_key(name) || nodes.is_empty() {
            return;
        }
        let names: Vec<&str> = nodes.keys().map(String::as_str).collect();
        let label = match did_you_mean(name, names.iter().copied()) {
            Some(s) => format!("did you mean `{s}`?"),
            None => "no such node".into(),
        };
        let d = Diagnostic::error("unknown_node", Some(span), format!("unknown node `{name}`"))
            .with_label(label)
            .with_hint(format!("the test defines {}", code_list(&names)));
        self.diags.push(d);
    }

    // ----- steps -----

    fn steps(&mut self, items: &[Value]) -> Vec<Step> {
        items.iter().filter_map(|item| self.step(item)).collect()
    }

    fn step(&mut self, v: &Value) -> Option<Step> {
        let entries = self.attrs(v, "a step")?;
        let mut actions: Vec<&Entry> = Vec::new();
        let mut had_unknown = false;
        for e in entries {
            let k = e.key.as_str();
            if ACTION_KEYS.contains(&k) {
                actions.push(e);
            } else if !STEP_MODIFIERS.contains(&k) && !STEP_SIBLINGS.iter().any(|(s, _)| *s == k) {
                had_unknown = true;
                let known: Vec<&str> = ACTION_KEYS
                    .iter()
                    .chain(STEP_MODIFIERS)
                    .copied()
                    .chain(STEP_SIBLINGS.iter().map(|(s, _)| *s))
                    .collect();
                self.unknown_key(
                    "unknown_step_key",
                    e,
                    &known,
                    "a step has one action key (e.g. `succeed`, `waitForUnit`) plus optional `node` and `timeout`",
                );
            }
        }
        let action_entry = match actions.as_slice() {
            [] => {
                if !had_unknown {
                    self.diags.push(
                        Diagnostic::error("missing_action", Some(v.span), "step has no action")
                            .with_label("nothing to do")
                            .with_hint(format!("add exactly one of {}", code_list(ACTION_KEYS))),
                    );
                }
                return None;
            }
            [one] => *one,
            [first, rest @ ..] => {
                for extra in rest {
                    self.diags.push(
                        Diagnostic::error(
                            "multiple_actions",
                            Some(extra.key_span),
                            format!("step has two actions: `{}` and `{}`", first.key, extra.key),
                        )
                        .with_label("second action")
                        .with_secondary(first.key_span, "first action")
                        .with_hint("split them into separate steps: `{ … }` per action"),
                    );
                }
                return None;
            }
        };
        let key = action_entry.key.as_str();
        let sibling = |name: &str| entries.iter().find(|e| e.key == name);

        // Siblings that belong to another action.
        for e in entries {
            if let Some((_, owners)) = STEP_SIBLINGS.iter().find(|(s, _)| *s == e.key)
                && !owners.contains(&key)
            {
                self.diags.push(
                    Diagnostic::error(
                        "misplaced_step_key",
                        Some(e.key_span),
                        format!("`{}` does not apply to `{key}`", e.key),
                    )
                    .with_label(format!("not used by `{key}`"))
                    .with_hint(format!("`{}` belongs to {}", e.key, code_list(owners))),
                );
            }
        }

        let timeout = sibling("timeout").and_then(|t| {
            let secs = self.number(&t.value, "`timeout`")?;
            if secs > 0.0 && secs.is_finite() {
                Some(secs)
            } else {
                self.bad_timeout(t.value.span, &secs.to_string());
                None
            }
        });
        let explicit_node =
            sibling("node").and_then(|n| self.str(&n.value, "`node`").map(|s| (s, n.value.span)));

        let (action, value_node) = self.action(action_entry, &sibling)?;
        let node = self.resolve_node(&action, action_entry, explicit_node, value_node, sibling("node"));
        Some(Step { node, timeout, action, span: Some(v.span) })
    }

    /// Decides the node of a step and reports node mistakes.
    fn resolve_node(
        &mut self,
        action: &Action,
        action_entry: &Entry,
        explicit: Option<(String, Span)>,
        from_value: Option<(String, Span)>,
        node_entry: Option<&Entry>,
    ) -> Option<String> {
        if !action.needs_node() {
            if let Some(e) = node_entry {
                self.diags.push(
                    Diagnostic::error(
                        "misplaced_step_key",
                        Some(e.key_span),
                        format!("`node` does not apply to `{}`", action.key()),
                    )
                    .with_label(format!("`{}` does not run on a node", action.key()))
                    .with_hint("remove `node` here; set it on the steps that run commands"),
                );
            }
            return None;
        }
        let chosen = match (explicit, from_value) {
            (Some((a, a_span)), Some((b, b_span))) => {
                if a != b {
                    self.diags.push(
                        Diagnostic::error(
                            "conflicting_node",
                            Some(b_span),
                            format!("`{}` names node `{b}` but `node` says `{a}`", action.key()),
                        )
                        .with_label(format!("node `{b}`"))
                        .with_secondary(a_span, format!("node `{a}`"))
                        .with_hint(format!(
                            "write either `{} = \"{a}\";` or `{} = true; node = \"{a}\";`",
                            action.key(),
                            action.key()
                        )),
                    );
                }
                Some((a, a_span))
            }
            (Some(n), None) | (None, Some(n)) => Some(n),
            (None, None) => None,
        };
        if let Some((name, span)) = chosen {
            self.check_node(&name, span);
            return Some(name);
        }
        let nodes = self.known_nodes()?;
        match nodes.len() {
            0 => None,
            1 => nodes.keys().next().cloned(),
            _ => {
                let names: Vec<&str> = nodes.keys().map(String::as_str).collect();
                let first = names.first().copied().unwrap_or("machine");
                let d = Diagnostic::error(
                    "missing_node",
                    Some(action_entry.key_span),
                    format!("step `{}` does not say which node it runs on", action.key()),
                )
                .with_label("which node?")
                .with_hint(format!("add `node = \"{first}\";` (the test defines {})", code_list(&names)));
                self.diags.push(d);
                None
            }
        }
    }

    /// Converts the action key's value. Also returns a node named by the
    /// value itself (`start = "server";`).
    fn action<'e>(
        &mut self,
        e: &Entry,
        sibling: &dyn Fn(&str) -> Option<&'e Entry>,
    ) -> Option<(Action, Option<(String, Span)>)> {
        let v = &e.value;
        let what = format!("`{}`", e.key);
        let opt_str =
            |c: &mut Self, name: &str| sibling(name).and_then(|s| c.str(&s.value, &format!("`{name}`")));
        let action = match e.key.as_str() {
            "waitForUnit" => {
                let unit = self.str(v, &what);
                if let Some(unit) = &unit {
                    self.unit_name(unit, v.span);
                }
                let user = opt_str(self, "user");
                if let (Some(user), Some(entry)) = (&user, sibling("user")) {
                    self.shell_word(ShellWord::User, user, entry.value.span);
                }
                Action::WaitForUnit { unit: unit?, user }
            }
            "waitForOpenPort" | "waitForClosedPort" => {
                let port = self.port(v, &what);
                let addr = opt_str(self, "addr");
                let port = port?;
                if e.key == "waitForOpenPort" {
                    Action::WaitForOpenPort { port, addr }
                } else {
                    Action::WaitForClosedPort { port, addr }
                }
            }
            "waitForFile" => Action::WaitForFile { path: self.str(v, &what)? },
            "waitForConsoleText" => {
                let regex = self.str(v, &what)?;
                self.regex(&regex, v.span);
                Action::WaitForConsoleText { regex }
            }
            "succeed" | "waitUntilSucceeds" => {
                let command = self.command(v, &what, false);
                let expect = match sibling("expect") {
                    Some(x) => self.expect(&x.value)?,
                    None => Expect::default(),
                };
                let command = command?;
                if e.key == "succeed" {
                    Action::Succeed { command, expect }
                } else {
                    Action::WaitUntilSucceeds { command, expect }
                }
            }
            "fail" => Action::Fail { command: self.command(v, &what, true)? },
            "waitUntilFails" => Action::WaitUntilFails { command: self.command(v, &what, true)? },
            "sleep" => {
                let seconds = self.number(v, &what)?;
                if !(seconds >= 0.0 && seconds.is_finite()) {
                    self.diags.push(
                        Diagnostic::error(
                            "invalid_sleep",
                            Some(v.span),
                            format!("cannot sleep {seconds} seconds"),
                        )
                        .with_label("negative")
                        .with_hint("give a number of seconds, zero or more"),
                    );
                    return None;
                }
                Action::Sleep { seconds }
            }
            "http" => self.http(v)?,
            "start" | "shutdown" | "crash" | "reboot" | "block" | "unblock" => {
                let node = match &v.kind {
                    Kind::Str(name) => Some((name.clone(), v.span)),
                    Kind::Bool(true) => None,
                    _ => {
                        let d = match &v.kind {
                            Kind::Opaque { .. } => {
                                self.wrong_type(v, Ty::Str, &what);
                                return None;
                            }
                            other => Diagnostic::error(
                                "wrong_type",
                                Some(v.span),
                                format!("{what} must be a node name or `true`, found {}", other.describe()),
                            ),
                        };
                        self.diags.push(d.with_label("expected a node name or `true`").with_hint(format!(
                            "write `{} = \"<node>\";`, or `{} = true;` for the step's node",
                            e.key, e.key
                        )));
                        return None;
                    }
                };
                let action = match e.key.as_str() {
                    "start" => Action::Start,
                    "shutdown" => Action::Shutdown,
                    "crash" => Action::Crash,
                    "reboot" => Action::Reboot,
                    "block" => Action::Block,
                    _ => Action::Unblock,
                };
                return Some((action, node));
            }
            "copyFromVm" => {
                let source = self.str(v, &what);
                if let Some(source) = &source {
                    self.shell_word(ShellWord::CopySource, source, v.span);
                }
                let target_dir = opt_str(self, "targetDir");
                if let (Some(dir), Some(entry)) = (&target_dir, sibling("targetDir")) {
                    self.out_path("`targetDir`", dir, entry.value.span);
                }
                Action::CopyFromVm { source: source?, target_dir }
            }
            "screenshot" => {
                let name = self.str(v, &what)?;
                self.shell_word(ShellWord::Screenshot, &name, v.span);
                if !name.starts_with('-') {
                    self.out_path("screenshot name", &name, v.span);
                }
                Action::Screenshot { name }
            }
            "subtest" => {
                let title = self.str(v, &what);
                let steps = match sibling("steps") {
                    Some(s) => {
                        let items = self.list(&s.value, "`steps`")?;
                        if items.is_empty() {
                            self.empty_steps(s.value.span, "the subtest");
                        }
                        self.steps(items)
                    }
                    None => {
                        self.diags.push(
                            Diagnostic::error("missing_field", Some(e.key_span), "subtest has no `steps`")
                                .with_label("subtest without steps")
                                .with_hint("add `steps = [ … ];` next to `subtest`"),
                        );
                        return None;
                    }
                };
                Action::Subtest { title: title?, steps }
            }
            // ACTION_KEYS and this match list the same keys.
            _ => return None,
        };
        Some((action, None))
    }

    /// A shell command: a string that does something.
    /// `must_fail` for `fail` and `waitUntilFails`.
    fn command(&mut self, v: &Value, what: &str, must_fail: bool) -> Option<String> {
        let command = self.str(v, what)?;
        if names::is_blank_command(&command) {
            let label = if command.is_empty() { "empty command" } else { "only whitespace" };
            // `sh -c ''` exits 0: a waiting-for-failure step could never pass.
            let effect = if must_fail { "so this step can never pass" } else { "so it tests nothing" };
            self.diags.push(
                Diagnostic::error("empty_command", Some(v.span), format!("{what} has an empty command"))
                    .with_label(label)
                    .with_hint(format!(
                        "write the shell command to run in the node, e.g. `\"systemctl is-active syshc\"`; \
                         an empty command always succeeds, {effect}"
                    )),
            );
        }
        Some(command)
    }

    /// Refuses unit names the stock driver cannot quote (see
    /// [`names::is_safe_unit_name`]).
    fn unit_name(&mut self, unit: &str, span: Span) {
        if names::is_safe_unit_name(unit) {
            self.option_like(unit, span);
            return;
        }
        let (message, label) = match names::first_unsafe_unit_char(unit) {
            None => ("the unit name is empty".to_string(), "empty unit name".to_string()),
            Some(c) => (
                format!("unit name `{}` cannot be passed safely to the test driver", unit.escape_debug()),
                format!("{} is not allowed in unit names here", shown_char(c)),
            ),
        };
        self.diags.push(
            Diagnostic::error("unsafe_unit_name", Some(span), message).with_label(label).with_hint(format!(
                "the stock Python driver puts the name into a shell command unescaped; use only {} \
                     (e.g. `\"syshc.service\"`, `\"getty@tty1.service\"`)",
                names::UNIT_NAME_CHARS
            )),
        );
    }

    /// Refuses values the stock driver hands to a shell unquoted (see
    /// [`names::is_shell_safe`]).
    fn shell_word(&mut self, what: ShellWord, value: &str, span: Span) {
        if names::is_shell_safe(value) {
            self.option_like(value, span);
            return;
        }
        let (code, noun, example) = match what {
            ShellWord::User => ("unsafe_user_name", "user name", "`user = \"alice\";`"),
            ShellWord::CopySource => {
                ("unsafe_path", "`copyFromVm` path", "`copyFromVm = \"/var/log/syshc.log\";`")
            }
            ShellWord::Screenshot => {
                ("unsafe_screenshot_name", "screenshot name", "`screenshot = \"login-screen\";`")
            }
        };
        let (message, label) = match names::first_unsafe_shell_char(value) {
            None => (format!("the {noun} is empty"), format!("empty {noun}")),
            Some(c) => (
                format!("{noun} `{}` cannot be passed safely to the test driver", value.escape_debug()),
                format!("{} is not allowed here", shown_char(c)),
            ),
        };
        self.diags.push(
            Diagnostic::error(code, Some(span), message).with_label(label).with_hint(format!(
                "the stock Python driver passes the {noun} to a shell without quoting; use only {} (e.g. {example})",
                names::SHELL_SAFE_CHARS
            )),
        );
    }

    /// Refuses a value that `systemctl`, `su` or `cp` would take for an
    /// option: both backends pass it as a plain argument.
    fn option_like(&mut self, value: &str, span: Span) {
        if value.starts_with('-') {
            self.diags.push(
                Diagnostic::error("option_like_value", Some(span), format!("`{value}` begins with `-`"))
                    .with_label("would be read as a command-line option")
                    .with_hint("names and paths passed to commands in the VM may not begin with `-`"),
            );
        }
    }

    /// Refuses an output path (`targetDir`, a screenshot name) that would
    /// leave the driver's output directory: absolute, with `..`, or empty.
    fn out_path(&mut self, what: &str, value: &str, span: Span) {
        if let Err(e) = crate::fsutil::check_relative(value) {
            self.diags.push(
                Diagnostic::error("path_outside_output", Some(span), format!("{what}: {e}"))
                    .with_label("must stay inside the output directory")
                    .with_hint("write a relative path without `..`, e.g. `\"logs\"`; files land in the test's output directory"),
            );
        }
    }

    fn port(&mut self, v: &Value, what: &str) -> Option<u16> {
        let p = self.int(v, what)?;
        match u16::try_from(p) {
            Ok(port) if port > 0 => Some(port),
            _ => {
                self.diags.push(
                    Diagnostic::error("port_out_of_range", Some(v.span), format!("port {p} is out of range"))
                        .with_label("not in 1..65535")
                        .with_hint("TCP ports are between 1 and 65535"),
                );
                None
            }
        }
    }

    fn regex(&mut self, pattern: &str, span: Span) {
        if let Err(e) = pattern::check(pattern) {
            let code = if e.message.starts_with("invalid") { "invalid_regex" } else { "unportable_regex" };
            self.diags.push(
                Diagnostic::error(code, Some(span), e.message)
                    .with_label("in this regular expression")
                    .with_hint(e.hint),
            );
        }
    }

    fn expect(&mut self, v: &Value) -> Option<Expect> {
        let entries = self.attrs(v, "`expect`")?;
        let mut out = Expect::default();
        let mut ok = true;
        for e in entries {
            let what = format!("`expect.{}`", e.key);
            match e.key.as_str() {
                "contains" => out.contains = self.str(&e.value, &what),
                "equals" => out.equals = self.str(&e.value, &what),
                "matches" => {
                    out.matches = self.str(&e.value, &what);
                    if let Some(p) = &out.matches {
                        self.regex(p, e.value.span);
                    }
                }
                "exitCode" => match self.int(&e.value, &what) {
                    Some(code) if (0..=255).contains(&code) => out.exit_code = i32::try_from(code).ok(),
                    Some(code) => {
                        ok = false;
                        self.diags.push(
                            Diagnostic::error(
                                "exit_code_out_of_range",
                                Some(e.value.span),
                                format!("exit code {code} is out of range"),
                            )
                            .with_label("not in 0..255")
                            .with_hint("exit statuses are between 0 and 255"),
                        );
                    }
                    None => ok = false,
                },
                _ => {
                    ok = false;
                    self.unknown_key(
                        "unknown_expect_key",
                        e,
                        EXPECT_KEYS,
                        &format!("`expect` takes {}", code_list(EXPECT_KEYS)),
                    );
                }
            }
        }
        ok.then_some(out)
    }

    fn http(&mut self, v: &Value) -> Option<Action> {
        let entries = self.attrs(v, "`http`")?;
        let mut url = None;
        let mut status = 200;
        let mut contains = None;
        let mut ok = true;
        for e in entries {
            let what = format!("`http.{}`", e.key);
            match e.key.as_str() {
                "url" => url = self.str(&e.value, &what),
                "status" => match self.int(&e.value, &what) {
                    Some(s) if (100..=599).contains(&s) => status = u16::try_from(s).unwrap_or(200),
                    Some(s) => {
                        ok = false;
                        self.diags.push(
                            Diagnostic::error(
                                "status_out_of_range",
                                Some(e.value.span),
                                format!("HTTP status {s} is out of range"),
                            )
                            .with_label("not in 100..599")
                            .with_hint("use an HTTP status code such as 200 or 404"),
                        );
                    }
                    None => ok = false,
                },
                "contains" => {
                    if e.value.kind != Kind::Null {
                        contains = self.str(&e.value, &what);
                        ok &= contains.is_some();
                    }
                }
                _ => {
                    ok = false;
                    self.unknown_key(
                        "unknown_http_key",
                        e,
                        HTTP_KEYS,
                        &format!("`http` takes {}", code_list(HTTP_KEYS)),
                    );
                }
            }
        }
        if !entries.iter().any(|e| e.key == "url") {
            self.diags.push(
                Diagnostic::error("missing_field", Some(v.span), "`http` has no `url`")
                    .with_label("missing `url`")
                    .with_hint("add the address to fetch: `url = \"http://localhost:8080/\";`"),
            );
            return None;
        }
        if !ok {
            return None;
        }
        Some(Action::Http { url: url?, status, contains })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ok(text: &str) -> TestSpec {
        let (spec, diags) = parse(FileId(0), Path::new("tests/vm/t.nix"), text);
        assert!(diags.is_empty(), "{diags:#?}");
        spec.expect("spec")
    }

    fn codes(text: &str) -> Vec<&'static str> {
        parse(FileId(0), Path::new("tests/vm/t.nix"), text).1.iter().map(|d| d.code).collect()
    }

    #[test]
    fn minimal_description() {
        let spec = parse_ok(r#"{ nodes.machine = {}; steps = [ { waitForUnit = "a.service"; } ]; }"#);
        assert_eq!(spec.name, "t");
        assert_eq!(spec.nodes.keys().collect::<Vec<_>>(), ["machine"]);
        assert_eq!(spec.steps[0].node.as_deref(), Some("machine"));
        assert_eq!(spec.steps[0].action, Action::WaitForUnit { unit: "a.service".into(), user: None });
    }

    #[test]
    fn every_action() {
        let spec = parse_ok(
            r#"{
              nodes = { a = {}; b = {}; };
              steps = [
                { waitForUnit = "u"; user = "alice"; node = "a"; timeout = 5; }
                { waitForOpenPort = 80; addr = "::1"; node = "a"; }
                { waitForClosedPort = 81; node = "b"; }
                { waitForFile = "/f"; node = "a"; }
                { waitForConsoleText = "login: ?$"; node = "a"; }
                { succeed = "true"; expect = { contains = "x"; equals = "y"; matches = "z+"; exitCode = 3; }; node = "a"; }
                { fail = "false"; node = "a"; }
                { waitUntilSucceeds = "x"; expect.contains = "ok"; node = "a"; }
                { waitUntilFails = "x"; node = "a"; timeout = 0.5; }
                { sleep = 2; }
                { http = { url = "http://h"; status = 404; contains = null; }; node = "b"; }
                { start = "a"; } { shutdown = true; node = "b"; } { crash = "a"; }
                { reboot = "a"; } { block = "a"; } { unblock = "a"; }
                { copyFromVm = "/log"; targetDir = "logs"; node = "a"; }
                { screenshot = "s"; node = "a"; }
                { subtest = "t"; steps = [ { sleep = 0.5; } ]; }
              ];
            }"#,
        );
        assert_eq!(spec.steps.len(), 20);
        let keys: Vec<&str> = spec.steps.iter().map(|s| s.action.key()).collect();
        assert_eq!(keys, ACTION_KEYS);
        assert_eq!(spec.steps[0].timeout, Some(5.0));
        assert_eq!(spec.steps[12].node.as_deref(), Some("b"));
        assert_eq!(
            spec.steps[5].action,
            Action::Succeed {
                command: "true".into(),
                expect: Expect {
                    contains: Some("x".into()),
                    equals: Some("y".into()),
                    matches: Some("z+".into()),
                    exit_code: Some(3)
                }
            }
        );
        assert_eq!(
            spec.steps[10].action,
            Action::Http { url: "http://h".into(), status: 404, contains: None }
        );
    }

    #[test]
    fn all_mistakes_are_reported() {
        let c = codes(
            r#"{ nodes.m = {}; nme = "x"; steps = [ { succed = "x"; } { waitForOpenPort = 70000; } { sleep = 1; fail = "x"; } ]; }"#,
        );
        assert_eq!(c, ["unknown_top_level_key", "unknown_step_key", "port_out_of_range", "multiple_actions"]);
    }

    #[test]
    fn top_level_function_is_an_error() {
        assert_eq!(codes("{ pkgs, ... }: { nodes.m = {}; steps = []; }"), ["top_level_function"]);
    }

    #[test]
    fn syntax_errors_are_reported_once() {
        assert_eq!(codes("{ nodes.m = {} steps = [ ]; }"), ["nix_syntax"]);
        assert_eq!(codes(""), ["nix_syntax"]);
    }

    #[test]
    fn json_adapter() {
        let j = serde_json::json!({
            "name": "j", "nodes": { "m": null },
            "steps": [ { "succeed": "x", "expect": { "exitCode": 1 } }, { "sleep": 0.25 } ]
        });
        let (spec, diags) = from_json(FileId(3), Path::new("tests/vm/j.nix"), &j);
        assert!(diags.is_empty(), "{diags:?}");
        let spec = spec.expect("spec");
        assert_eq!(spec.name, "j");
        assert_eq!(spec.steps[0].node.as_deref(), Some("m"));
        assert_eq!(spec.steps[1].action, Action::Sleep { seconds: 0.25 });
    }

    /// Line of each top-level step (and of subtest steps) after converting
    /// `json` with the source `text`.
    fn json_step_lines(text: &str, json: &serde_json::Value) -> Vec<Option<usize>> {
        let mut sources = crate::diagnostic::Sources::default();
        let file = sources.add("tests/vm/j.nix", text);
        let (spec, diags) = from_json_with_source(file, Path::new("tests/vm/j.nix"), text, json);
        assert!(diags.is_empty(), "{diags:?}");
        let mut lines = Vec::new();
        for step in &spec.expect("spec").steps {
            lines.push(step.span.map(|s| sources.line_col(s.file, s.start).0));
            if let Action::Subtest { steps, .. } = &step.action {
                lines.extend(steps.iter().map(|s| s.span.map(|s| sources.line_col(s.file, s.start).0)));
            }
        }
        lines
    }

    #[test]
    fn json_steps_take_positions_from_the_source() {
        let json = serde_json::json!({
            "nodes": { "m": null },
            "steps": [ { "waitForOpenPort": 80 }, { "subtest": "s", "steps": [ { "sleep": 1 } ] } ]
        });
        // Computed values inside a literal list: each step keeps its own line.
        let text = "let p = 80; in {\n  nodes.m = { };\n  steps = [\n    { waitForOpenPort = p; }\n    {\n      subtest = \"s\";\n      steps = [ { sleep = 1; } ];\n    }\n  ];\n}\n";
        assert_eq!(json_step_lines(text, &json), [Some(4), Some(5), Some(7)]);
        // A computed list: every step is at the `steps` value.
        let text = "let xs = [ ]; in {\n  nodes.m = { };\n\n  steps = xs ++ [ ];\n}\n";
        assert_eq!(json_step_lines(text, &json), [Some(4), Some(4), Some(4)]);
        // A list of a different length: same.
        let text = "{\n  nodes.m = { };\n  steps =\n    [ (f 1) ] ++ g;\n}\n";
        assert_eq!(json_step_lines(text, &json), [Some(4), Some(4), Some(4)]);
        // Nothing static to go by: no positions rather than line 1.
        for text in ["import ./x.nix", "{ nodes.m = { }; } // import ./steps.nix", "{ broken"] {
            assert_eq!(json_step_lines(text, &json), [None, None, None], "{text}");
        }
        let (spec, _) = from_json(FileId(0), Path::new("tests/vm/j.nix"), &json);
        assert!(spec.expect("spec").steps.iter().all(|s| s.span.is_none()));
    }

    #[test]
    fn json_mistakes_point_at_the_given_span() {
        let j = serde_json::json!({ "nodes": { "a": null, "b": null }, "steps": [ { "succed": "x" }, { "fail": "y" } ] });
        let span = Span { file: FileId(2), start: 0, end: 40 };
        let (spec, diags) = from_json_spanned(Path::new("tests/vm/j.nix"), &j, span);
        let codes: Vec<_> = diags.iter().map(|d| d.code).collect();
        assert_eq!(codes, ["unknown_step_key", "missing_node"]);
        assert!(diags.iter().all(|d| d.span == Some(span)));
        assert_eq!(spec.map(|s| s.steps.len()), Some(1));
    }
}

#[cfg(test)]
mod deep_tests {
    use super::*;

    /// Deep nesting must end in diagnostics, not a stack overflow.
    #[test]
    fn deeply_nested_input_does_not_overflow() {
        for text in [
            "[".repeat(100_000),
            format!("{{ nodes.m = {{}}; steps = {}1{}; }}", "[".repeat(5000), "]".repeat(5000)),
            format!(
                "{{ nodes.m = {{}}; steps = [ {{ sleep = {}1{}; }} ]; }}",
                "(".repeat(5000),
                ")".repeat(5000)
            ),
            "{ a = ".repeat(20_000),
            format!("{{ nodes.m = {{}}; steps = [ {{ sleep = {}1; }} ]; }}", "-".repeat(5000)),
        ] {
            let (_, diags) = parse(FileId(0), Path::new("d.nix"), &text);
            assert!(!diags.is_empty());
        }
    }
}
