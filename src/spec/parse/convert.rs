//! The converter's state and the top level of a description: its keys,
//! and the generic shape checks (types, unknown keys) every family uses.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::LazyLock;

use crate::diagnostic::{Diagnostic, Span};
use crate::spec::computed::{self, Computed, ComputedType, Num};
use crate::spec::parse::{
    EXPECT_KEYS, HTTP_KEYS, KNOWN_SYSTEMS, STEP_MODIFIERS, STEP_SIBLINGS, TEST_CLASHES, TEST_OPTIONS,
    TOP_KEYS, valid_test_name,
};
use crate::spec::validate::did_you_mean;
use crate::spec::value::{Entry, Kind, Value};
use crate::spec::{ACTION_KEYS, Backend, TestSpec};

/// Steps are copied into the generated test, so they must be literals.
const STATIC_HINT: &str = "this value shapes the test (which steps, which nodes, which checks), so it must be plain \
                           data or fold statically: literals, `let`-bound literals, and `map`, `++`, `toString` or \
                           `${…}` over them. Strings and numbers that a step runs, waits on or compares (commands, unit \
                           names, paths, expectations, ports, timeouts, exit codes) may be any Nix expression; a \
                           top-level function `{ pkgs, lib, nodes, ... }:` provides `pkgs` and `nodes`";
const EVAL_HINT: &str = "or let Nix evaluate the description: `nixvm-gen --eval generate`";

/// What a value should be, for wrong-type messages.
#[derive(Clone, Copy)]
pub(super) enum Ty {
    Bool,
    Str,
    Int,
    Number,
    List,
    Attrs,
}

impl Ty {
    pub(super) fn name(self) -> &'static str {
        match self {
            Ty::Bool => "a boolean",
            Ty::Str => "a string",
            Ty::Int => "an integer",
            Ty::Number => "a number",
            Ty::List => "a list",
            Ty::Attrs => "an attribute set",
        }
    }
    pub(super) fn hint(self) -> &'static str {
        match self {
            Ty::Bool => "write `true` or `false`",
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
pub(super) enum ShellWord {
    /// `user` of `waitForUnit` (`su -l <user>`).
    User,
    /// `copyFromVm` (`cp -r <source> …`).
    CopySource,
    /// `screenshot` (`pnmtopng … > <name>`).
    Screenshot,
    /// The guest path `copyFromHost` writes (`cp -r … <target>`).
    CopyTarget,
    /// `waitForOpenUnixSocket` (`nc -z -U <path>`).
    SocketPath,
}

/// A character for a label: visible characters in backquotes, others
/// (space, control characters) by name or escape.
pub(super) fn shown_char(c: char) -> String {
    match c {
        ' ' => "a space".to_string(),
        '`' => "a backquote".to_string(),
        c if c.is_control() || c.is_whitespace() => format!("`{}`", c.escape_default()),
        c => format!("`{c}`"),
    }
}

/// The known nodes of the test being converted.
#[derive(Default)]
pub(super) enum Nodes {
    /// `nodes` is missing or unreadable: node checks are skipped.
    #[default]
    Unknown,
    Known(BTreeMap<String, Span>),
}

pub(super) struct Conv<'a> {
    pub(super) diags: &'a mut Vec<Diagnostic>,
    pub(super) nodes: Nodes,
    /// Values only Nix can compute, indexed by their placeholders.
    pub(super) computed: Vec<Computed>,
    /// Capture names so far, with where each is captured.
    pub(super) captures: BTreeMap<String, Span>,
    /// `$NAME` in commands that no earlier step captured: an error if a
    /// later step (or the step itself) captures `NAME` ([`Conv::captures_used_early`]).
    pub(super) uncaptured_uses: Vec<(String, Span)>,
    /// The description's text, to point at a `$NAME` inside a string.
    pub(super) source: Option<&'a str>,
    /// Snapshot names `isolate` uses so far (they must differ), with the
    /// `isolate` key of each.
    pub(super) isolate_names: BTreeMap<String, Span>,
    /// Names of the explicit `snapshot` steps, with the span of each name.
    pub(super) snapshot_names: Vec<(String, Span)>,
    /// The description's directory relative to the flake root (`tests/vm`),
    /// where `copyFromHost` sources are.
    pub(super) dir: String,
}

impl<'a> Conv<'a> {
    fn new(diags: &'a mut Vec<Diagnostic>, source: Option<&'a str>) -> Conv<'a> {
        Conv {
            diags,
            nodes: Nodes::Unknown,
            computed: Vec::new(),
            captures: BTreeMap::new(),
            uncaptured_uses: Vec::new(),
            source,
            isolate_names: BTreeMap::new(),
            snapshot_names: Vec::new(),
            dir: String::new(),
        }
    }
}

/// Checks the value tree against the description format. `source` is the
/// description's text when known (for exact spans inside strings).
pub(super) fn convert<'a>(
    rel_path: &Path,
    root: &Value,
    source: Option<&'a str>,
    diags: &'a mut Vec<Diagnostic>,
) -> Option<TestSpec> {
    let entries = match &root.kind {
        Kind::Attrs(entries) => entries,
        Kind::Lambda => {
            diags.push(
                Diagnostic::error(
                    "top_level_function",
                    Some(root.span),
                    "a description function must return an attribute set, not another function",
                )
                .with_label("this is a function")
                .with_hint(
                    "take every argument in one header: `{ pkgs, lib, nodes, ... }: { nodes = …; steps = …; }`",
                ),
            );
            return None;
        }
        _ => {
            Conv::new(diags, source).wrong_type(root, Ty::Attrs, "the description");
            return None;
        }
    };
    let mut c = Conv::new(diags, source);
    c.dir = rel_path.parent().map(|d| d.to_string_lossy().into_owned()).unwrap_or_default();
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
        function: false,
        computed: Vec::new(),
        test_module: false,
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
    let mut isolate = None;
    for e in entries {
        let v = &e.value;
        match e.key.as_str() {
            "nodes" => {}
            "name" => {
                saw_name = true;
                if let Some(name) = c.str(v, "`name`") {
                    if !valid_test_name(&name) || crate::spec::names::is_reserved_check_name(&name) {
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
            "isolate" => {
                if c.isolate_flag(v) {
                    isolate = Some(e.key_span);
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
            "test" => {
                spec.test_module = true;
                if let Kind::Attrs(options) = &v.kind {
                    c.test_options(options);
                }
            }
            other => c.unknown_key("unknown_top_level_key", e, TOP_KEYS, &top_key_hint(other)),
        }
    }
    if let Some(span) = isolate {
        c.isolate_names.insert(super::ISOLATE_SNAPSHOT.to_owned(), span);
        super::isolate(&mut spec.steps, super::ISOLATE_SNAPSHOT, span);
    }
    c.snapshot_names_taken();
    super::snapshots::check(&spec, c.diags);
    if !saw_name && (!valid_test_name(&stem) || crate::spec::names::is_reserved_check_name(&stem)) {
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
    if spec.backend == Backend::Rust {
        c.python_needs_python_backend(&spec.steps);
    }
    c.captures_used_early();
    spec.computed = c.computed;
    Some(spec)
}

impl Conv<'_> {
    /// The names a `test` module sets: runNixOSTest options, and none that
    /// the generated check sets itself.
    fn test_options(&mut self, options: &[Entry]) {
        for e in options {
            if let Some((_, why)) = TEST_CLASHES.iter().find(|(k, _)| *k == e.key) {
                self.diags.push(
                    Diagnostic::error(
                        "test_option_clash",
                        Some(e.key_span),
                        format!("`test.{}` cannot be set", e.key),
                    )
                    .with_label("set by the generated check")
                    .with_hint(format!("{why}; remove it from `test`")),
                );
            } else if e.key == "globalTimeout" {
                // Fine unless `timeout` sets it too; Nix reports that clash.
            } else if !TEST_OPTIONS.contains(&e.key.as_str()) {
                self.unknown_key(
                    "unknown_test_option",
                    e,
                    TEST_OPTIONS,
                    "`test` takes runNixOSTest options such as `defaults`, `node.specialArgs`, `extraPythonPackages`, `skipTypeCheck`",
                );
            }
        }
    }

    /// `{ python = ''…''; }` is the stock driver's; nixvm-driver cannot run it.
    fn python_needs_python_backend(&mut self, steps: &[crate::spec::Step]) {
        for step in steps {
            match &step.action {
                crate::spec::Action::Python { .. } => self.diags.push(
                    Diagnostic::error(
                        "python_needs_python_backend",
                        step.span,
                        "a `python` step runs only with `backend = \"python\"`",
                    )
                    .with_label("Python code for the stock driver")
                    .with_hint(
                        "write the step declaratively (`succeed`, `waitUntilSucceeds` with `expect`, `capture`, …; \
                         see docs/descriptions.md, \"Coming from Python\"), or set `backend = \"python\";`",
                    ),
                ),
                crate::spec::Action::Subtest { steps, .. } => self.python_needs_python_backend(steps),
                _ => {}
            }
        }
    }
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
pub(super) fn open_brace(span: Span) -> Span {
    Span { end: span.start.saturating_add(1).min(span.end.max(span.start)), ..span }
}

/// `` `key` ``, or `` `expect.key` `` with `prefix` `"expect."`, for what
/// a value is in messages. The known keys' names are written once: every
/// step asks for one and only a diagnostic reads it (a `format!` per step
/// was a tenth of converting, callgrind).
pub(super) fn key_name(prefix: &str, key: &str) -> Cow<'static, str> {
    type Names = HashMap<&'static str, String>;
    /// The names of the plain keys, of `expect`'s and of `http`'s.
    static NAMES: LazyLock<[Names; 3]> = LazyLock::new(|| {
        let names = |prefix: &str, keys: &mut dyn Iterator<Item = &'static str>| -> Names {
            keys.map(|k| (k, format!("`{prefix}{k}`"))).collect()
        };
        let plain = ACTION_KEYS.iter().chain(STEP_MODIFIERS).chain(STEP_SIBLINGS.iter().map(|(k, _)| k));
        [
            names("", &mut plain.copied()),
            names("expect.", &mut EXPECT_KEYS.iter().copied()),
            names("http.", &mut HTTP_KEYS.iter().copied()),
        ]
    });
    let table = match prefix {
        "" => Some(&NAMES[0]),
        "expect." => Some(&NAMES[1]),
        "http." => Some(&NAMES[2]),
        _ => None,
    };
    match table.and_then(|t| t.get(key)) {
        Some(name) => Cow::Borrowed(name.as_str()),
        None => Cow::Owned(format!("`{prefix}{key}`")),
    }
}

pub(crate) fn code_list(items: &[&str]) -> String {
    items.iter().map(|i| format!("`{i}`")).collect::<Vec<_>>().join(", ")
}

impl Conv<'_> {
    // ----- generic shape checks -----

    pub(super) fn wrong_type(&mut self, v: &Value, ty: Ty, what: &str) {
        let d = match &v.kind {
            Kind::Invalid => return,
            Kind::Opaque { why } | Kind::Computed { why, .. } => Diagnostic::error(
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

    pub(super) fn str(&mut self, v: &Value, what: &str) -> Option<String> {
        match &v.kind {
            Kind::Str(s) if computed::has_marker(s) => {
                self.reserved_chars(v.span, what);
                None
            }
            Kind::Str(s) => Some(s.clone()),
            _ => {
                self.wrong_type(v, Ty::Str, what);
                None
            }
        }
    }

    /// A string that Nix may compute: a literal, or a placeholder for a
    /// [`Computed`] value that the generated check evaluates and checks
    /// (its type, and `pattern` when the stock driver passes it unquoted).
    pub(super) fn text(&mut self, v: &Value, what: &str, pattern: Option<&'static str>) -> Option<String> {
        match &v.kind {
            Kind::Computed { expr, .. } => {
                let index = self.push_computed(expr, ComputedType::String, pattern, what, v.span);
                Some(computed::placeholder(index))
            }
            _ => self.str(v, what),
        }
    }

    /// A number that Nix may compute: a literal, checked by `literal`
    /// (which reports its own mistakes), or a [`Num::Computed`] that the
    /// generated check evaluates and checks against `ty` (type and range).
    pub(super) fn num<T>(
        &mut self,
        v: &Value,
        what: &str,
        ty: ComputedType,
        literal: impl FnOnce(&mut Self, &Value) -> Option<T>,
    ) -> Option<Num<T>> {
        match &v.kind {
            Kind::Computed { expr, .. } => {
                Some(Num::Computed(self.push_computed(expr, ty, None, what, v.span)))
            }
            _ => literal(self, v).map(Num::Lit),
        }
    }

    pub(super) fn push_computed(
        &mut self,
        expr: &str,
        ty: ComputedType,
        pattern: Option<&'static str>,
        what: &str,
        span: Span,
    ) -> usize {
        self.computed.push(Computed { expr: expr.to_string(), ty, pattern, what: what.to_string(), span });
        self.computed.len() - 1
    }

    fn reserved_chars(&mut self, span: Span, what: &str) {
        self.diags.push(
            Diagnostic::error("reserved_character", Some(span), format!("{what} contains U+E000 or U+E001"))
                .with_label("reserved character")
                .with_hint("nixvm-gen uses these private-use characters internally; remove them"),
        );
    }

    pub(super) fn int(&mut self, v: &Value, what: &str) -> Option<i64> {
        match &v.kind {
            Kind::Int(i) => Some(*i),
            _ => {
                self.wrong_type(v, Ty::Int, what);
                None
            }
        }
    }

    pub(super) fn number(&mut self, v: &Value, what: &str) -> Option<f64> {
        match &v.kind {
            Kind::Int(i) => Some(*i as f64),
            Kind::Float(f) => Some(*f),
            _ => {
                self.wrong_type(v, Ty::Number, what);
                None
            }
        }
    }

    pub(super) fn list<'v>(&mut self, v: &'v Value, what: &str) -> Option<&'v [Value]> {
        match &v.kind {
            Kind::List(items) => Some(items),
            _ => {
                self.wrong_type(v, Ty::List, what);
                None
            }
        }
    }

    pub(super) fn attrs<'v>(&mut self, v: &'v Value, what: &str) -> Option<&'v [Entry]> {
        match &v.kind {
            Kind::Attrs(entries) => Some(entries),
            _ => {
                self.wrong_type(v, Ty::Attrs, what);
                None
            }
        }
    }

    pub(super) fn unknown_key(&mut self, code: &'static str, e: &Entry, known: &[&str], fallback_hint: &str) {
        let (label, hint) = match did_you_mean(&e.key, known.iter().copied()) {
            Some(s) => (format!("did you mean `{s}`?"), format!("replace `{}` with `{s}`", e.key)),
            None => ("unknown key".to_string(), fallback_hint.to_string()),
        };
        let place = match code {
            "unknown_step_key" => "in a step",
            "unknown_expect_key" => "in `expect`",
            "unknown_test_option" => "in `test`",
            "unknown_http_key" => "in `http`",
            _ => "in the description",
        };
        self.diags.push(
            Diagnostic::error(code, Some(e.key_span), format!("unknown key `{}` {place}", e.key))
                .with_label(label)
                .with_hint(hint),
        );
    }

    pub(super) fn unknown_value(
        &mut self,
        code: &'static str,
        span: Span,
        message: &str,
        value: &str,
        known: &[&str],
    ) {
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

    pub(super) fn bad_timeout(&mut self, span: Span, shown: &str) {
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

    pub(super) fn empty_steps(&mut self, span: Span, whose: &str) {
        self.diags.push(
            Diagnostic::error("empty_steps", Some(span), format!("{whose} has no steps"))
                .with_label("empty list")
                .with_hint("add at least one step, e.g. `{ waitForUnit = \"multi-user.target\"; }`"),
        );
    }

    pub(super) fn invalid_test_name(&mut self, name: &str, span: Span, from_stem: bool) {
        let (message, hint) = if crate::spec::names::is_reserved_check_name(name) {
            (
                format!("`{name}` is reserved: Nix gives it a meaning in `checks.<system>`"),
                "choose another name (rename the file or set `name = \"…\";`)",
            )
        } else if from_stem {
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
    pub(super) fn empty_systems(&mut self, span: Span) {
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

    pub(super) fn system(&mut self, v: &Value) -> Option<String> {
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
}

/// Finds a sibling key of the step being converted.
pub(super) type Sibling<'s, 'e> = &'s dyn Fn(&str) -> Option<&'e Entry>;
/// A node named by an action's own value (`start = "server";`), with its span.
pub(super) type NodeRef = Option<(String, Span)>;

impl Conv<'_> {
    /// An optional string sibling (`user`, `addr`, `targetDir`).
    pub(super) fn opt_str<'e>(&mut self, sibling: Sibling<'_, 'e>, name: &str) -> Option<String> {
        sibling(name).and_then(|s| self.str(&s.value, &key_name("", name)))
    }
}
