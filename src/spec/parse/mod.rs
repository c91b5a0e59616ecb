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

use std::path::Path;

use rnix::SyntaxKind;

use crate::diagnostic::{Diagnostic, FileId, Span};
pub use crate::spec::names::{valid_node_name, valid_test_name};
use crate::spec::value::{self, Value};
use crate::spec::{Action, Step, TestSpec};

mod captures;
mod checks;
mod commands;
mod convert;
mod display;
mod files;
mod nodes;
mod power;
mod snapshots;
mod steps;
mod syntax;
#[cfg(test)]
mod tests;
mod units;
mod waits;

pub(crate) use convert::code_list;
use convert::convert;
pub use snapshots::{ISOLATE_SNAPSHOT, isolate};
use syntax::syntax_error;

/// Keys of the top-level attribute set.
pub const TOP_KEYS: &[&str] =
    &["name", "description", "nodes", "modules", "systems", "backend", "timeout", "isolate", "steps", "test"];
/// Top-level options of `runNixOSTest`'s test module that a description's
/// `test` module may set. Read from NixOS/nixpkgs `nixos/lib/testing/`:
/// nodes.nix (5b19d6957a86944b11e1c2ed8a7e276bea2eaa52: nodes, defaults,
/// node.*, minimal), driver.nix (0b73a0c2114322292ae614235b7c50da19226483:
/// driver, globalTimeout, enableOCR, extraPythonPackages, extraDriverArgs,
/// skipLint, skipTypeCheck, logLevel, qemu, hostPkgs, sshBackdoor,
/// enableDebugHook), testScript.nix (00f5ae0602cb0b82fca5916fb1b68b6b2f4ea531),
/// interactive.nix, meta.nix, name.nix, network.nix, run.nix (passthru,
/// rawTestDerivationArg); plus the module-system keys.
pub const TEST_OPTIONS: &[&str] = &[
    "defaults",
    "nodeDefaults",
    "containers",
    "containerDefaults",
    "extraBaseModules",
    "extraBaseNodeModules",
    "node",
    "minimal",
    "hostPkgs",
    "qemu",
    "globalTimeout",
    "enableOCR",
    "extraPythonPackages",
    "extraDriverArgs",
    "skipLint",
    "skipTypeCheck",
    "logLevel",
    "sshBackdoor",
    "enableDebugHook",
    "interactive",
    "meta",
    "passthru",
    "rawTestDerivationArg",
    "imports",
    "_file",
    "key",
    "config",
    "options",
];
/// Options the generated check sets itself, with the reason.
pub const TEST_CLASHES: &[(&str, &str)] = &[
    ("name", "the test's name is `name` at the top of the description"),
    ("nodes", "the nodes are `nodes` at the top of the description"),
    ("testScript", "nixvm-gen writes the testScript from `steps`"),
    ("driver", "nixvm-gen sets the driver (nixvm-driver for the rust backend)"),
    ("testScriptString", "it is read-only (derived from testScript)"),
    ("pythonTestDriverPackage", "it is read-only"),
];
/// Keys every step may have besides its action.
pub const STEP_MODIFIERS: &[&str] = &["node", "timeout"];
/// Keys that refine one action, with the actions they belong to.
pub const STEP_SIBLINGS: &[(&str, &[&str])] = &[
    ("user", &["waitForUnit", "systemctl", "requireUnitState", "startJob", "stopJob"]),
    ("addr", &["waitForOpenPort", "waitForClosedPort"]),
    ("expect", &["succeed", "waitUntilSucceeds", "execute", "systemctl"]),
    ("capture", &["succeed", "waitUntilSucceeds", "execute", "systemctl"]),
    ("state", &["requireUnitState"]),
    ("targetDir", &["copyFromVm"]),
    ("target", &["copyFromHost"]),
    ("guestPort", &["forwardPort"]),
    ("datagram", &["waitForOpenUnixSocket"]),
    ("steps", &["subtest"]),
    ("isolate", &["subtest"]),
    ("tty", &["waitUntilTtyMatches"]),
];
pub const EXPECT_KEYS: &[&str] = &["contains", "notContains", "equals", "matches", "exitCode", "json"];
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

/// Parses many descriptions, keeping the input order. `nixvm-gen check`
/// runs on every commit and must stay fast with hundreds of descriptions:
/// up to [`FILES_PER_WORKER`] files are parsed on the calling thread when its
/// stack is big enough (the main thread's usually is), with no thread to
/// start or wait for; more are spread over a few big-stack worker threads,
/// one per core. On a loaded machine every thread hand-off is a wait for a
/// core: with 100 descriptions at load 12-17 on 2 cores the workers cost
/// 6-17 ms of wall time per `check` (medians, benches/RESULTS.md); with no
/// other process competing they gain nothing measurable.
pub fn parse_many(inputs: &[ParseInput<'_>]) -> Vec<(Option<TestSpec>, Vec<Diagnostic>)> {
    let wanted = inputs.len().div_ceil(FILES_PER_WORKER).max(1);
    if wanted == 1 && stack_fits_a_parse() {
        return inputs.iter().map(|&(f, p, t)| parse_here(f, p, t)).collect();
    }
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, wanted);
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

/// Below this many files one thread parses them all: starting and joining
/// workers costs more than the parallel parse saves (measured at 100).
const FILES_PER_WORKER: usize = 200;

/// The stack a thread must be allowed to grow to for parsing on it. The
/// deepest descriptions the limits accept ([`MAX_BRACKET_DEPTH`],
/// [`crate::limits::MAX_NESTING`], the folding depth) needed less than
/// 256 KiB in a release build and less than 1 MiB in a debug build
/// (2026-12-01, found with `ulimit -s`); this is the usual main-thread limit.
const INLINE_STACK_BYTES: u64 = 8 << 20;

/// Whether the calling thread can parse without a big-stack worker. Only
/// the main thread's size is known: it may grow to `RLIMIT_STACK`.
fn stack_fits_a_parse() -> bool {
    if std::thread::current().name() != Some("main") {
        return false;
    }
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit only writes the struct it is given.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_STACK, &mut limit) } == 0;
    ok && (limit.rlim_cur == libc::RLIM_INFINITY || limit.rlim_cur >= INLINE_STACK_BYTES)
}

/// Brackets nested deeper than this are refused before parsing: rnix's
/// error recovery on very deep input takes minutes.
const MAX_BRACKET_DEPTH: usize = 100;

/// The first bracket (`[`, `{`, `(`, `${`, string start) that nests deeper
/// than [`MAX_BRACKET_DEPTH`], found by a linear scan of the tokens.
fn too_deep_tokens<'a>(file: FileId, tokens: impl IntoIterator<Item = rnix::Token<'a>>) -> Option<Span> {
    use SyntaxKind::*;
    let mut depth = 0usize;
    let mut offset = 0usize;
    for (kind, tok) in tokens {
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
    // Both depth checks on one tokenization (each tokenizing on its own
    // was 6 % of a cold `check`, callgrind, 1,000 descriptions).
    let tokens = match crate::limits::checked_tokens(text) {
        Ok(tokens) => tokens,
        Err(refused) => return (None, vec![refused.diagnostic(file)]),
    };
    if let Some(span) = too_deep_tokens(file, tokens.iter().copied()) {
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
    let (root, function) = value::lower_description(file, &expr, &mut diags);
    let mut spec = convert(rel_path, &root, Some(text), &mut diags);
    if let Some(spec) = &mut spec {
        spec.function = function;
    }
    diags.sort_by_key(|d| d.span.map(|s| (s.start, s.end)));
    // A `let` binding folded at several uses reports its problems once.
    diags.dedup_by(|a, b| a.code == b.code && a.span == b.span && a.message == b.message);
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
    let mut spec = convert(rel_path, &root, Some(text), &mut diags);
    if let Some(spec) = &mut spec {
        forget_spans(&mut spec.steps, unknown);
    }
    (spec, diags)
}

/// The static value tree of `text`, if it parses (its diagnostics are
/// dropped: the evaluated value is what counts).
fn static_tree(file: FileId, text: &str) -> Option<Value> {
    let tokens = crate::limits::checked_tokens(text).ok()?;
    if too_deep_tokens(file, tokens).is_some() {
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
    let spec = convert(rel_path, &root, None, &mut diags);
    (spec, diags)
}

fn whole(file: FileId, text: &str) -> Span {
    Span { file, start: 0, end: u32::try_from(text.len()).unwrap_or(u32::MAX) }
}
