//! `nixvm-gen wire`: lossless editing of `flake.nix` so that
//! `checks.<system>` includes the generated checks.
//!
//! The file is parsed with rnix only to find *where* to edit: every change is
//! a splice of new text into the original string at a byte offset taken from
//! the concrete syntax tree. Nothing is re-printed, so comments, blank lines
//! and formatting outside the spliced text stay byte-for-byte.
//!
//! Shapes handled (after `let … in`, `with …;` and parentheses):
//!
//! ```nix
//! outputs = { self, nixpkgs, ... }: { … };                       # plain / rec
//! outputs = … : flake-utils.lib.eachDefaultSystem (system: { … }) // { … };
//! outputs = inputs@{ flake-parts, ... }: flake-parts.lib.mkFlake { inherit inputs; } { … };
//! ```
//!
//! In the first shape `checks = import ./nix/checks.generated.nix { … };` is
//! added to the returned set (or merged into an existing `checks` with
//! `nixpkgs.lib.recursiveUpdate`). With flake-utils the per-system set gets
//! `checks = (import …).${system} or { };` (merged with `//` when present):
//! a `checks` in the set right of `//` would replace the per-system ones.
//! With flake-parts the module gets `flake.checks = import …;`: flake-parts
//! merges `flake.checks` with the `checks` its `perSystem` modules define.
//!
//! Anything else (e.g. `outputs = import ./outputs.nix;`) is refused with
//! the exact text to add by hand.

use rnix::ast::{self, HasEntry};
use rnix::{SyntaxKind, SyntaxNode, TextRange};
use rowan::ast::AstNode;

use super::ScaffoldError;
use crate::config::Config;
use crate::diagnostic::{Diagnostic, Sources, Span};

/// What to wire, derived from [`Config`].
#[derive(Clone, Debug)]
pub struct WireOptions {
    /// Generated file relative to the flake root, as in `./<output>`.
    pub output: String,
    /// Name of nixvm-gen among the flake inputs (and the generated file's
    /// argument of the same name).
    pub input_name: String,
    /// URL written when the input is missing.
    pub url: String,
    /// Also add `hydraJobs = import ./<output> { …; hydraJobs = true; };`
    /// (`--hydra-jobs`).
    pub hydra_jobs: bool,
}

impl WireOptions {
    pub fn from_config(config: &Config) -> Result<Self, ScaffoldError> {
        super::init::validate_input_name(&config.input_name)?;
        Ok(WireOptions {
            output: super::init::nix_relative_path("output file", &config.output)?,
            input_name: config.input_name.clone(),
            url: super::NIXVM_GEN_FLAKE_URL.to_string(),
            hydra_jobs: false,
        })
    }
}

/// The edited text and a human summary of each edit. No edits means the
/// flake was already wired.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WireOutcome {
    pub text: String,
    pub edits: Vec<String>,
    /// Things the user should know (e.g. a `//` that may shadow checks).
    pub notes: Vec<String>,
}

/// Why the flake was left alone.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// `flake.nix` has syntax errors.
    #[error("flake.nix does not parse: {message}")]
    Syntax { range: Option<TextRange>, message: String },
    /// The flake has a shape that cannot be edited safely.
    #[error("cannot edit flake.nix safely: {reason}")]
    Unsupported { range: Option<TextRange>, reason: String, by_hand: String },
    /// The edit produced an unparsable file: a bug in `wire`, never written.
    #[error("internal error: the edited flake.nix would not parse ({message}); nothing was written")]
    Bug { message: String },
}

impl WireError {
    /// A rustc-style report of the refusal, followed by what to add by hand.
    pub fn render(&self, file: &str, text: &str, color: bool) -> String {
        let mut sources = Sources::default();
        let id = sources.add(file, text);
        let (range, code) = match self {
            WireError::Syntax { range, .. } => (*range, "wire_syntax"),
            WireError::Unsupported { range, .. } => (*range, "wire_unsupported"),
            WireError::Bug { .. } => (None, "wire_bug"),
        };
        let mut d = Diagnostic::error(code, range.map(|r| Span::new(id, r)), self.to_string());
        if range.is_some() {
            d = d.with_label("here");
        }
        if let WireError::Syntax { .. } = self {
            d = d.with_hint("fix the syntax error first (`nix-instantiate --parse flake.nix` shows it too)");
        }
        let mut out = crate::diagnostic::render(&[d], &sources, color);
        if let WireError::Unsupported { by_hand, .. } = self {
            out.push_str("nothing was changed; add this by hand:\n\n");
            out.push_str(by_hand);
        }
        out
    }
}

/// One text splice at byte offsets of the original file.
#[derive(Clone, Debug)]
struct Splice {
    start: usize,
    end: usize,
    text: String,
}

/// How the generated file's arguments are reached from the outputs body.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Ref {
    /// A pattern entry of the same name: `nixpkgs`.
    Direct,
    /// Through the bound argument set: `inputs.nixpkgs`.
    Via(String),
}

/// Edits `text` (a `flake.nix`). Idempotent: on an already wired flake it
/// returns no edits and the text unchanged.
pub fn wire(text: &str, opts: &WireOptions) -> Result<WireOutcome, WireError> {
    if let Err(e) = crate::limits::check_nesting(text) {
        let (start, end) = e.range();
        let range = rnix::TextRange::new(
            rnix::TextSize::try_from(start).unwrap_or_default(),
            rnix::TextSize::try_from(end).unwrap_or_default(),
        );
        return Err(WireError::Syntax { range: Some(range), message: e.message() });
    }
    let parse = rnix::Root::parse(text);
    if let Some(e) = parse.errors().first() {
        return Err(WireError::Syntax { range: parse_error_range(e), message: e.to_string() });
    }
    let root = parse.tree();
    let mut w = Wiring { text, opts, splices: Vec::new(), edits: Vec::new(), notes: Vec::new() };
    w.run(&root)?;
    w.finish()
}

struct Wiring<'a> {
    text: &'a str,
    opts: &'a WireOptions,
    splices: Vec<Splice>,
    edits: Vec<String>,
    notes: Vec<String>,
}

/// Where the generated checks go.
enum Target {
    /// An attribute set of flake outputs.
    Outputs(ast::AttrSet),
    /// The per-system set of `eachDefaultSystem (system: { … })`.
    PerSystem { set: ast::AttrSet, system: String },
    /// A flake-parts top-level module.
    FlakeParts(ast::AttrSet),
}

impl<'a> Wiring<'a> {
    fn run(&mut self, root: &ast::Root) -> Result<(), WireError> {
        let Some(top) = root.expr().map(strip_parens).and_then(|e| match e {
            ast::Expr::AttrSet(s) => Some(s),
            _ => None,
        }) else {
            return Err(self.unsupported(
                root.expr().map(|e| e.syntax().text_range()),
                "the file is not an attribute set `{ inputs = …; outputs = …; }`",
                true,
            ));
        };
        let Some(outputs) = find_binding(&top, &["outputs"]) else {
            return Err(self.unsupported(
                Some(top.syntax().text_range()),
                "the flake has no `outputs = …;` attribute",
                true,
            ));
        };
        let outputs_value = outputs.value();
        let wired = outputs_value.as_ref().is_some_and(|v| self.mentions_output(v.syntax()));
        let has_input = has_input(&top, &self.opts.input_name);
        let wants_hydra = self.opts.hydra_jobs
            && !outputs_value.as_ref().is_some_and(|v| v.syntax().text().to_string().contains("hydraJobs"));
        if wired && has_input && !wants_hydra {
            return Ok(());
        }
        if !has_input
            && let Some((name, range)) = input_urls(&top)
                .into_iter()
                .find(|(n, url, _)| *n != self.opts.input_name && url.contains("nixvm-gen"))
                .map(|(n, _, r)| (n, r))
        {
            return Err(self.unsupported(
                Some(range),
                &format!(
                    "the flake already has nixvm-gen as the input `{name}`; \
                     run `nixvm-gen --input-name {name} wire` (and use it for generate/check too)"
                ),
                false,
            ));
        }
        let lambda = match outputs_value.clone().map(strip_parens) {
            Some(ast::Expr::Lambda(l)) => l,
            other => {
                let what = other.as_ref().map_or_else(String::new, |e| format!(" (`{}`)", short(e.syntax())));
                return Err(self.unsupported(
                    other.map(|e| e.syntax().text_range()).or(Some(outputs.syntax().text_range())),
                    &format!("`outputs` is not a function literal{what}"),
                    !has_input,
                ));
            }
        };
        if !has_input {
            self.add_input(&top, &outputs)?;
            self.add_pattern_entry(&lambda);
        }
        if !wired {
            self.wire_checks(&lambda, !has_input)?;
        }
        if wants_hydra {
            self.wire_hydra_jobs(&lambda, !has_input)?;
        }
        Ok(())
    }

    /// `hydraJobs = import ./<output> { …; hydraJobs = true; };` next to
    /// the checks (flake-parts: `flake.hydraJobs`). Not per system: with
    /// flake-utils the user adds it outside `eachDefaultSystem` (a note says how).
    fn wire_hydra_jobs(&mut self, lambda: &ast::Lambda, input_added: bool) -> Result<(), WireError> {
        let Some(body) = lambda.body() else {
            return Ok(());
        };
        let target = self.locate(body)?;
        let (refs, _) = self.import_refs(lambda, input_added);
        let output = self.opts.output.clone();
        let value = |indent: Option<&str>| import_text_with(&output, &refs, indent, &["hydraJobs = true;"]);
        let merge = |old: &str| format!("({old}) // ({})", value(None));
        match target {
            Target::Outputs(set) => self.merge_into(&set, &["hydraJobs"], &value, &merge),
            Target::FlakeParts(module) => match find_binding(&module, &["flake"]).map(|b| b.value()) {
                Some(Some(ast::Expr::AttrSet(set))) => self.merge_into(&set, &["hydraJobs"], &value, &merge),
                _ => self.merge_into(&module, &["flake", "hydraJobs"], &value, &merge),
            },
            Target::PerSystem { .. } => {
                self.notes.push(format!(
                    "hydraJobs is not per system: add `hydraJobs = {};` to the outputs outside the per-system function",
                    value(None)
                ));
                Ok(())
            }
        }
    }

    /// Whether `node` contains the path literal `./<output>`.
    fn mentions_output(&self, node: &SyntaxNode) -> bool {
        let want = format!("./{}", self.opts.output);
        node.descendants().any(|n| n.kind() == SyntaxKind::NODE_PATH_REL && n.text() == want.as_str())
    }

    fn input_line(&self) -> String {
        format!("{}.url = \"{}\";", self.opts.input_name, self.opts.url)
    }

    /// Adds `inputs.<name>.url = "…";` next to the other inputs.
    fn add_input(&mut self, top: &ast::AttrSet, outputs: &ast::AttrpathValue) -> Result<(), WireError> {
        let line = self.input_line();
        if let Some(b) = find_binding(top, &["inputs"]) {
            match b.value() {
                Some(ast::Expr::AttrSet(set)) => {
                    let s = self.insert_binding(&set, &|_| line.clone());
                    self.splices.push(s);
                }
                other => {
                    return Err(self.unsupported(
                        other.map(|e| e.syntax().text_range()),
                        "`inputs` is not an attribute set literal",
                        true,
                    ));
                }
            }
        } else {
            let full = format!("inputs.{line}");
            let last_input =
                top.attrpath_values().filter(|b| attr_names(b).first().is_some_and(|n| n == "inputs")).last();
            let splice = match last_input {
                Some(b) if ends_its_line(b.syntax()) => self.insert_after_line_of(b.syntax(), &full),
                Some(b) => {
                    let at = usize::from(b.syntax().text_range().end());
                    Splice { start: at, end: at, text: format!(" {full}") }
                }
                None => self.insert_before(outputs.syntax(), &full),
            };
            self.splices.push(splice);
        }
        self.edits.push(format!("added the flake input `{}` ({})", self.opts.input_name, self.opts.url));
        Ok(())
    }

    /// A pattern without `...` must list the new input, or Nix refuses to
    /// call `outputs` with it.
    fn add_pattern_entry(&mut self, lambda: &ast::Lambda) {
        let Some(ast::Param::Pattern(p)) = lambda.param() else { return };
        let name = &self.opts.input_name;
        if p.ellipsis_token().is_some() || pattern_has(&p, name) {
            return;
        }
        let splice = match p.pat_entries().last() {
            Some(last) => {
                let at = usize::from(last.syntax().text_range().end());
                Splice { start: at, end: at, text: format!(", {name}") }
            }
            None => {
                let Some(open) =
                    p.syntax().children_with_tokens().find(|t| t.kind() == SyntaxKind::TOKEN_L_BRACE)
                else {
                    return;
                };
                let at = usize::from(open.text_range().end());
                Splice { start: at, end: at, text: format!(" {name}") }
            }
        };
        self.splices.push(splice);
        self.edits.push(format!("added `{name}` to the arguments of `outputs`"));
    }

    /// How to reach `name` from the outputs body; may bind `@inputs`.
    fn reference(&mut self, lambda: &ast::Lambda, name: &str, input_added: bool) -> Ref {
        match lambda.param() {
            Some(ast::Param::IdentParam(i)) => Ref::Via(ident_text(i.ident())),
            Some(ast::Param::Pattern(p)) => {
                let added_entry = input_added && name == self.opts.input_name && p.ellipsis_token().is_none();
                if pattern_has(&p, name) || added_entry {
                    return Ref::Direct;
                }
                if let Some(bind) = p.pat_bind() {
                    return Ref::Via(ident_text(bind.ident()));
                }
                let bind = if pattern_has(&p, "inputs") { "flake-inputs" } else { "inputs" };
                if !self.splices.iter().any(|s| s.text == format!("@{bind}")) {
                    let at = usize::from(p.syntax().text_range().end());
                    self.splices.push(Splice { start: at, end: at, text: format!("@{bind}") });
                    self.edits.push(format!("bound the arguments of `outputs` as `@{bind}`"));
                }
                Ref::Via(bind.to_string())
            }
            None => Ref::Via("inputs".to_string()),
        }
    }

    /// How the import reaches `self`, `nixpkgs` and nixvm-gen, and how to
    /// name `nixpkgs.lib`, the way the outputs function allows.
    fn import_refs(&mut self, lambda: &ast::Lambda, input_added: bool) -> (Vec<(String, Ref)>, String) {
        let names = ["self", "nixpkgs", self.opts.input_name.as_str()].map(str::to_string);
        let refs: Vec<(String, Ref)> =
            names.iter().map(|n| (n.clone(), self.reference(lambda, n, input_added))).collect();
        let lib = match &refs[1].1 {
            Ref::Direct => "nixpkgs.lib".to_string(),
            Ref::Via(b) => format!("{b}.nixpkgs.lib"),
        };
        (refs, lib)
    }

    fn wire_checks(&mut self, lambda: &ast::Lambda, input_added: bool) -> Result<(), WireError> {
        let Some(body) = lambda.body() else {
            return Err(self.unsupported(Some(lambda.syntax().text_range()), "`outputs` has no body", false));
        };
        let target = self.locate(body)?;
        let (refs, lib) = self.import_refs(lambda, input_added);
        let output = self.opts.output.clone();
        let import = |indent: Option<&str>| import_text(&output, &refs, indent);
        let merge_all = |old: &str| format!("{lib}.recursiveUpdate ({old}) ({})", import(None));
        match target {
            Target::Outputs(set) => self.merge_into(&set, &["checks"], &import, &merge_all),
            Target::PerSystem { set, system } => {
                let per_system =
                    |indent: Option<&str>| format!("({}).${{{system}}} or {{ }}", import(indent));
                let merge = |old: &str| format!("({old}) // ({})", per_system(None));
                self.merge_into(&set, &["checks"], &per_system, &merge)
            }
            Target::FlakeParts(module) => match find_binding(&module, &["flake"]).map(|b| b.value()) {
                Some(Some(ast::Expr::AttrSet(set))) => {
                    self.merge_into(&set, &["checks"], &import, &merge_all)
                }
                Some(other) => Err(self.unsupported(
                    other.map(|e| e.syntax().text_range()),
                    "the flake-parts `flake` option is not an attribute set literal",
                    false,
                )),
                None => self.merge_into(&module, &["flake", "checks"], &import, &merge_all),
            },
        }
    }

    /// Adds `<path> = <value>;` to `set`, or wraps an existing `<path> = old;`
    /// with `merge(old)`.
    fn merge_into(
        &mut self,
        set: &ast::AttrSet,
        path: &[&str],
        value: &dyn Fn(Option<&str>) -> String,
        merge: &dyn Fn(&str) -> String,
    ) -> Result<(), WireError> {
        let dotted = path.join(".");
        for inherit in set.inherits() {
            if inherit.attrs().any(|a| attr_text(&a).as_deref() == Some(path[0])) {
                return Err(self.unsupported(
                    Some(inherit.syntax().text_range()),
                    &format!("`{}` is inherited here; its value cannot be extended in place", path[0]),
                    false,
                ));
            }
        }
        let exact = set.attrpath_values().find(|b| attr_names(b) == path);
        let deeper = set.attrpath_values().find(|b| {
            let names = attr_names(b);
            names.len() > path.len() && names[..path.len()] == *path
        });
        if let Some(b) = deeper.filter(|_| exact.is_none()) {
            return Err(self.unsupported(
                Some(b.syntax().text_range()),
                &format!(
                    "`{dotted}` is defined attribute by attribute (`{}`); \
                     gather it into one `{dotted} = {{ … }};` and run `nixvm-gen wire` again",
                    attr_names(&b).join(".")
                ),
                false,
            ));
        }
        match exact.and_then(|b| b.value()) {
            Some(ast::Expr::Lambda(l)) => Err(self.unsupported(
                Some(l.syntax().text_range()),
                &format!("`{dotted}` is a function, not an attribute set of checks"),
                false,
            )),
            Some(old) => {
                let r = old.syntax().text_range();
                let old_text = &self.text[usize::from(r.start())..usize::from(r.end())];
                let new = merge(old_text);
                self.splices.push(Splice { start: r.start().into(), end: r.end().into(), text: new });
                self.edits.push(format!("merged the existing `{dotted}` with the generated checks"));
                Ok(())
            }
            None => {
                let s = self.insert_binding(set, &|indent| format!("{dotted} = {};", value(indent)));
                self.splices.push(s);
                self.edits.push(format!("added `{dotted}` from ./{}", self.opts.output));
                Ok(())
            }
        }
    }

    /// Finds the attribute set the checks belong in.
    fn locate(&mut self, expr: ast::Expr) -> Result<Target, WireError> {
        let expr = strip_scopes(expr);
        match expr {
            ast::Expr::AttrSet(s) => Ok(Target::Outputs(s)),
            ast::Expr::BinOp(op) if op.operator() == Some(ast::BinOpKind::Update) => self.locate_update(op),
            ast::Expr::Apply(app) => {
                let (head, args) = flatten_apply(&app);
                let head_name = head.as_ref().and_then(last_name).unwrap_or_default();
                let last = args.last().cloned().map(strip_parens);
                match head_name.as_str() {
                    "mkFlake" => match last.map(strip_lambda).map(strip_scopes) {
                        Some(ast::Expr::AttrSet(s)) => Ok(Target::FlakeParts(s)),
                        other => Err(self.unsupported(
                            other.map(|e| e.syntax().text_range()),
                            "the flake-parts module is not an attribute set literal",
                            false,
                        )),
                    },
                    "eachDefaultSystem" | "eachSystem" => self.per_system(last, &app),
                    _ => Err(self.unsupported(
                        Some(app.syntax().text_range()),
                        &format!("the outputs are computed by a function call (`{}`)", short(app.syntax())),
                        false,
                    )),
                }
            }
            other => Err(self.unsupported(
                Some(other.syntax().text_range()),
                &format!("the outputs are not an attribute set literal (`{}`)", short(other.syntax())),
                false,
            )),
        }
    }

    /// `eachDefaultSystem (system: { … })`: the per-system set.
    fn per_system(&mut self, arg: Option<ast::Expr>, app: &ast::Apply) -> Result<Target, WireError> {
        if let Some(ast::Expr::Lambda(l)) = arg
            && let Some(ast::Param::IdentParam(p)) = l.param()
            && let Some(ast::Expr::AttrSet(set)) = l.body().map(strip_scopes)
        {
            return Ok(Target::PerSystem { set, system: ident_text(p.ident()) });
        }
        Err(self.unsupported(
            Some(app.syntax().text_range()),
            "the per-system function is not `system: { … }` with an attribute set literal",
            false,
        ))
    }

    /// `a // b // c`: prefer a literal set that already has `checks`, then a
    /// flake-utils per-system set, then the last literal set.
    fn locate_update(&mut self, op: ast::BinOp) -> Result<Target, WireError> {
        let operands = flatten_update(op.clone());
        let sets: Vec<ast::AttrSet> = operands
            .iter()
            .filter_map(|e| match strip_scopes(e.clone()) {
                ast::Expr::AttrSet(s) => Some(s),
                _ => None,
            })
            .collect();
        if let Some(s) = sets
            .iter()
            .find(|s| s.attrpath_values().any(|b| attr_names(&b).first().is_some_and(|n| n == "checks")))
        {
            return Ok(Target::Outputs(s.clone()));
        }
        for e in &operands {
            if let ast::Expr::Apply(app) = strip_scopes(e.clone()) {
                let (head, args) = flatten_apply(&app);
                let name = head.as_ref().and_then(last_name).unwrap_or_default();
                if matches!(name.as_str(), "eachDefaultSystem" | "eachSystem")
                    && let Ok(t) = self.per_system(args.last().cloned().map(strip_parens), &app)
                {
                    return Ok(t);
                }
            }
        }
        match sets.last() {
            Some(s) => {
                self.notes.push(
                    "the checks were added to the right-hand side of `//`, which replaces a `checks` \
                     attribute of its left-hand side; merge them by hand if the left side defines checks"
                        .to_string(),
                );
                Ok(Target::Outputs(s.clone()))
            }
            None => Err(self.unsupported(
                Some(op.syntax().text_range()),
                "no operand of `//` is an attribute set literal",
                false,
            )),
        }
    }

    /// A binding in `set`: on its own line after the last entry (or before
    /// the closing `}`), indented like the entries; inline in one-line sets.
    /// `make` renders the binding for a given indentation (`None`: inline).
    fn insert_binding(&self, set: &ast::AttrSet, make: &dyn Fn(Option<&str>) -> String) -> Splice {
        let text = self.text;
        let close = set.r_curly_token().map_or_else(
            || usize::from(set.syntax().text_range().end()),
            |t| usize::from(t.text_range().start()),
        );
        let line_start = text[..close].rfind('\n').map_or(0, |i| i + 1);
        let multi_line = line_start > usize::from(set.syntax().text_range().start());
        if multi_line
            && let Some(last) = set.entries().last()
            && ends_its_line(last.syntax())
        {
            let indent = indentation(text, last.syntax().text_range().start().into());
            return self.insert_after_line_of(last.syntax(), &make(Some(indent)));
        }
        if multi_line && text[line_start..close].trim().is_empty() {
            let indent = match set.entries().last() {
                Some(e) => indentation(text, e.syntax().text_range().start().into()).to_string(),
                None => format!("{}  ", &text[line_start..close]),
            };
            Splice { start: line_start, end: line_start, text: format!("{indent}{}\n", make(Some(&indent))) }
        } else {
            let pad = if text[..close].ends_with(char::is_whitespace) { "" } else { " " };
            Splice { start: close, end: close, text: format!("{pad}{} ", make(None)) }
        }
    }

    /// `line` after the line on which `node` ends, with `node`'s indentation.
    fn insert_after_line_of(&self, node: &SyntaxNode, line: &str) -> Splice {
        let end = usize::from(node.text_range().end());
        let at = self.text[end..].find('\n').map_or(self.text.len(), |i| end + i + 1);
        let indent = indentation(self.text, node.text_range().start().into());
        let lead = if at == self.text.len() && !self.text.ends_with('\n') { "\n" } else { "" };
        Splice { start: at, end: at, text: format!("{lead}{indent}{line}\n") }
    }

    /// `line` before `node`: on its own line when `node` starts its line,
    /// else inline.
    fn insert_before(&self, node: &SyntaxNode, line: &str) -> Splice {
        let start = usize::from(node.text_range().start());
        let line_start = self.text[..start].rfind('\n').map_or(0, |i| i + 1);
        if self.text[line_start..start].trim().is_empty() {
            let indent = &self.text[line_start..start];
            Splice { start: line_start, end: line_start, text: format!("{indent}{line}\n") }
        } else {
            Splice { start, end: start, text: format!("{line} ") }
        }
    }

    /// A refusal with the snippet to add by hand.
    fn unsupported(&self, range: Option<TextRange>, reason: &str, input_missing: bool) -> WireError {
        let o = self.opts;
        let name = &o.input_name;
        let mut by_hand = String::new();
        if input_missing {
            by_hand.push_str(&format!("  # in `inputs`:\n  {name}.url = \"{}\";\n\n", o.url));
        }
        let refs = [
            ("self".to_string(), Ref::Via("inputs".into())),
            ("nixpkgs".to_string(), Ref::Via("inputs".into())),
            (name.clone(), Ref::Via("inputs".into())),
        ];
        let import = import_text(&o.output, &refs, None);
        by_hand.push_str(&format!(
            "  # in the attribute set `outputs` returns, with `inputs` bound to the\n  \
             # argument of `outputs` (e.g. `outputs = {{ self, nixpkgs, ... }}@inputs:`):\n  \
             checks = {import};\n\n  \
             # or, to keep existing checks:\n  \
             checks = inputs.nixpkgs.lib.recursiveUpdate (<existing checks>) ({import});\n\n  \
             # with flake-parts, in the module given to mkFlake:\n  \
             flake.checks = {import};\n"
        ));
        WireError::Unsupported { range, reason: reason.to_string(), by_hand }
    }

    fn finish(mut self) -> Result<WireOutcome, WireError> {
        self.splices.sort_by_key(|s| (s.start, s.end));
        if self.text.contains("\r\n") {
            for s in &mut self.splices {
                s.text = s.text.replace('\n', "\r\n");
            }
        }
        let mut out = String::with_capacity(self.text.len() + 256);
        let mut pos = 0;
        for s in &self.splices {
            if s.start < pos {
                return Err(WireError::Bug { message: "overlapping edits".into() });
            }
            out.push_str(&self.text[pos..s.start]);
            out.push_str(&s.text);
            pos = s.end;
        }
        out.push_str(&self.text[pos..]);
        if let Some(e) = rnix::Root::parse(&out).errors().first() {
            return Err(WireError::Bug { message: e.to_string() });
        }
        Ok(WireOutcome { text: out, edits: self.edits, notes: self.notes })
    }
}

/// The `{ … }` argument statements of the import.
fn import_args(refs: &[(String, Ref)]) -> Vec<String> {
    let direct: Vec<&str> = refs.iter().filter(|(_, r)| *r == Ref::Direct).map(|(n, _)| n.as_str()).collect();
    let mut args = Vec::new();
    if !direct.is_empty() {
        args.push(format!("inherit {};", direct.join(" ")));
    }
    let mut bindings: Vec<&str> = Vec::new();
    for (_, r) in refs {
        if let Ref::Via(b) = r
            && !bindings.contains(&b.as_str())
        {
            bindings.push(b);
        }
    }
    for b in bindings {
        let via: Vec<&str> = refs
            .iter()
            .filter(|(_, r)| matches!(r, Ref::Via(x) if x == b))
            .map(|(n, _)| n.as_str())
            .collect();
        match via.as_slice() {
            [n] => args.push(format!("{n} = {b}.{n};")),
            _ => args.push(format!("inherit ({b}) {};", via.join(" "))),
        }
    }
    args
}

/// `import ./<output> { … }` on one line, or over several lines when an
/// indentation is given.
fn import_text(output: &str, refs: &[(String, Ref)], indent: Option<&str>) -> String {
    import_text_with(output, refs, indent, &[])
}

/// [`import_text`] with more arguments after the inputs.
fn import_text_with(output: &str, refs: &[(String, Ref)], indent: Option<&str>, extra: &[&str]) -> String {
    let mut args = import_args(refs);
    args.extend(extra.iter().map(|a| a.to_string()));
    match indent {
        None => format!("import ./{output} {{ {} }}", args.join(" ")),
        Some(indent) => {
            let body: String = args.iter().map(|a| format!("{indent}  {a}\n")).collect();
            format!("import ./{output} {{\n{body}{indent}}}")
        }
    }
}

/// Whether only whitespace or comments follow `node` on its last line.
fn ends_its_line(node: &SyntaxNode) -> bool {
    let mut next = node.next_sibling_or_token();
    while let Some(el) = next {
        match el.kind() {
            SyntaxKind::TOKEN_COMMENT => {}
            SyntaxKind::TOKEN_WHITESPACE => {
                if el.to_string().contains('\n') {
                    return true;
                }
            }
            _ => return false,
        }
        next = el.next_sibling_or_token();
    }
    false
}

fn parse_error_range(e: &rnix::ParseError) -> Option<TextRange> {
    use rnix::ParseError as P;
    match e {
        P::Unexpected(r)
        | P::UnexpectedExtra(r)
        | P::UnexpectedWanted(_, r, _)
        | P::UnexpectedDoubleBind(r)
        | P::DuplicatedArgs(r, _) => Some(*r),
        _ => None,
    }
}

fn strip_parens(mut e: ast::Expr) -> ast::Expr {
    while let ast::Expr::Paren(p) = &e {
        match p.expr() {
            Some(inner) => e = inner,
            None => break,
        }
    }
    e
}

/// Looks through parentheses, `let … in`, `with …;` and `assert …;`.
fn strip_scopes(mut e: ast::Expr) -> ast::Expr {
    loop {
        let next = match &e {
            ast::Expr::Paren(p) => p.expr(),
            ast::Expr::LetIn(l) => l.body(),
            ast::Expr::With(w) => w.body(),
            ast::Expr::Assert(a) => a.body(),
            _ => None,
        };
        match next {
            Some(n) => e = n,
            None => return e,
        }
    }
}

/// The body of a module function (`{ withSystem, ... }: { … }`).
fn strip_lambda(e: ast::Expr) -> ast::Expr {
    match &e {
        ast::Expr::Lambda(l) => l.body().map_or(e, strip_parens),
        _ => e,
    }
}

/// `f a b` → (`f`, [`a`, `b`]).
fn flatten_apply(app: &ast::Apply) -> (Option<ast::Expr>, Vec<ast::Expr>) {
    let mut args = Vec::new();
    let mut cur = app.clone();
    loop {
        if let Some(a) = cur.argument() {
            args.push(a);
        }
        match cur.lambda().map(strip_parens) {
            Some(ast::Expr::Apply(inner)) => cur = inner,
            head => {
                args.reverse();
                return (head, args);
            }
        }
    }
}

/// `a // b // c` → [`a`, `b`, `c`].
fn flatten_update(op: ast::BinOp) -> Vec<ast::Expr> {
    let mut out = Vec::new();
    for side in [op.lhs(), op.rhs()].into_iter().flatten() {
        match strip_parens(side.clone()) {
            ast::Expr::BinOp(inner) if inner.operator() == Some(ast::BinOpKind::Update) => {
                out.extend(flatten_update(inner));
            }
            _ => out.push(side),
        }
    }
    out
}

/// The last attribute name of `a.b.c` or the name of `c`.
fn last_name(e: &ast::Expr) -> Option<String> {
    match e {
        ast::Expr::Ident(i) => Some(ident_text(Some(i.clone()))),
        ast::Expr::Select(s) => s.attrpath()?.attrs().last().and_then(|a| attr_text(&a)),
        _ => None,
    }
}

fn ident_text(i: Option<ast::Ident>) -> String {
    i.and_then(|i| i.ident_token()).map(|t| t.text().to_string()).unwrap_or_default()
}

/// The static name of an attribute (`a`, `"a"`), `None` for `${…}`.
fn attr_text(a: &ast::Attr) -> Option<String> {
    match a {
        ast::Attr::Ident(i) => Some(ident_text(Some(i.clone()))),
        ast::Attr::Str(s) => {
            let parts = s.normalized_parts();
            match parts.as_slice() {
                [ast::InterpolPart::Literal(l)] => Some(l.clone()),
                [] => Some(String::new()),
                _ => None,
            }
        }
        ast::Attr::Dynamic(_) => None,
    }
}

/// Attribute names of a binding's path; dynamic parts become `${…}`.
fn attr_names(b: &ast::AttrpathValue) -> Vec<String> {
    b.attrpath()
        .map(|p| p.attrs().map(|a| attr_text(&a).unwrap_or_else(|| "${…}".to_string())).collect())
        .unwrap_or_default()
}

fn find_binding(set: &ast::AttrSet, path: &[&str]) -> Option<ast::AttrpathValue> {
    set.attrpath_values().find(|b| attr_names(b) == path)
}

/// Whether the top-level set declares input `name` in any form.
fn has_input(top: &ast::AttrSet, name: &str) -> bool {
    top.attrpath_values().any(|b| {
        let names = attr_names(&b);
        match names.as_slice() {
            [first, second, ..] if first == "inputs" => second == name,
            [first] if first == "inputs" => match b.value() {
                Some(ast::Expr::AttrSet(set)) => {
                    set.attrpath_values().any(|e| attr_names(&e).first().is_some_and(|n| n == name))
                        || set.inherits().any(|i| i.attrs().any(|a| attr_text(&a).as_deref() == Some(name)))
                }
                _ => false,
            },
            _ => false,
        }
    })
}

/// `(input name, url, url range)` of every input declared with a literal
/// `url`, in any of the usual spellings (`inputs.x.url`, `inputs = { x.url; }`,
/// `inputs = { x = { url; }; }`).
fn input_urls(top: &ast::AttrSet) -> Vec<(String, String, TextRange)> {
    fn literal(e: Option<ast::Expr>) -> Option<(String, TextRange)> {
        match e? {
            ast::Expr::Str(s) => match s.normalized_parts().as_slice() {
                [ast::InterpolPart::Literal(l)] => Some((l.clone(), s.syntax().text_range())),
                _ => None,
            },
            _ => None,
        }
    }
    /// Bindings of one input's set relative to the input: `url = …;`.
    fn from_set(name: &str, set: &ast::AttrSet, out: &mut Vec<(String, String, TextRange)>) {
        for b in set.attrpath_values() {
            if attr_names(&b) == ["url"]
                && let Some((url, r)) = literal(b.value())
            {
                out.push((name.to_string(), url, r));
            }
        }
    }
    let mut out = Vec::new();
    for b in top.attrpath_values() {
        let names = attr_names(&b);
        match names.as_slice() {
            [i, n, u] if i == "inputs" && u == "url" => {
                if let Some((url, r)) = literal(b.value()) {
                    out.push((n.clone(), url, r));
                }
            }
            [i, n] if i == "inputs" => {
                if let Some(ast::Expr::AttrSet(set)) = b.value() {
                    from_set(n, &set, &mut out);
                }
            }
            [i] if i == "inputs" => {
                let Some(ast::Expr::AttrSet(set)) = b.value() else { continue };
                for e in set.attrpath_values() {
                    match attr_names(&e).as_slice() {
                        [n, u] if u == "url" => {
                            if let Some((url, r)) = literal(e.value()) {
                                out.push((n.clone(), url, r));
                            }
                        }
                        [n] => {
                            if let Some(ast::Expr::AttrSet(inner)) = e.value() {
                                from_set(n, &inner, &mut out);
                            }
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    out
}

fn pattern_has(p: &ast::Pattern, name: &str) -> bool {
    p.pat_entries().any(|e| ident_text(e.ident()) == name)
}

/// Leading whitespace of the line holding `offset`.
fn indentation(text: &str, offset: usize) -> &str {
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let line = &text[line_start..];
    &line[..line.len() - line.trim_start_matches([' ', '\t']).len()]
}

/// The first line of a node, shortened for messages.
fn short(node: &SyntaxNode) -> String {
    let text = node.text().to_string();
    let first = text.lines().next().unwrap_or("");
    if first.chars().count() > 60 || text.contains('\n') {
        format!("{} …", first.chars().take(60).collect::<String>().trim_end())
    } else {
        first.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> WireOptions {
        WireOptions {
            output: "nix/checks.generated.nix".into(),
            input_name: "nixvm-gen".into(),
            url: "github:nixvm-gen/nixvm-gen".into(),
            hydra_jobs: false,
        }
    }

    #[test]
    fn hydra_jobs_next_to_checks() {
        let o = WireOptions { hydra_jobs: true, ..opts() };
        let src = "{\n  inputs.nixpkgs.url = \"x\";\n  outputs = { self, nixpkgs }: {\n    packages = { };\n  };\n}\n";
        let out = wire(src, &o).unwrap();
        assert!(
            out.text.contains(
                "    hydraJobs = import ./nix/checks.generated.nix {\n      inherit self nixpkgs nixvm-gen;\n      \
                 hydraJobs = true;\n    };\n"
            ),
            "{}",
            out.text
        );
        assert!(out.text.contains("checks = import"), "{}", out.text);
        assert!(wire(&out.text, &o).unwrap().edits.is_empty(), "not idempotent");
        // An already wired flake gets only hydraJobs.
        let plain = wire(src, &opts()).unwrap().text;
        let more = wire(&plain, &o).unwrap();
        assert_eq!(more.edits.len(), 1, "{:?}", more.edits);
        assert_eq!(more.text.matches("checks = import").count(), 1, "{}", more.text);
        assert!(more.text.contains("hydraJobs = true;"), "{}", more.text);
        assert!(rnix::Root::parse(&more.text).errors().is_empty(), "{}", more.text);
        // flake-utils: a note, no edit inside the per-system function.
        let fu = "{ outputs = { self, nixpkgs, flake-utils, nixvm-gen }: flake-utils.lib.eachDefaultSystem (system: { }); inputs.nixvm-gen.url = \"u\"; }";
        let r = wire(fu, &o).unwrap();
        assert!(!r.text.contains("hydraJobs = true"), "{}", r.text);
        assert!(r.notes.iter().any(|n| n.contains("hydraJobs is not per system")), "{:?}", r.notes);
    }

    fn wired(text: &str) -> String {
        let out =
            wire(text, &opts()).unwrap_or_else(|e| panic!("{e}\n{}", e.render("flake.nix", text, false)));
        let again = wire(&out.text, &opts()).unwrap();
        assert!(again.edits.is_empty(), "not idempotent: {:?}\n{}", again.edits, out.text);
        out.text
    }

    #[test]
    fn plain() {
        let src = "{\n  inputs.nixpkgs.url = \"x\";\n  # keep\n  outputs = { self, nixpkgs }: {\n    packages = { };\n  };\n}\n";
        let out = wired(src);
        assert_eq!(
            out,
            "{\n  inputs.nixpkgs.url = \"x\";\n  inputs.nixvm-gen.url = \"github:nixvm-gen/nixvm-gen\";\n  # keep\n  \
             outputs = { self, nixpkgs, nixvm-gen }: {\n    packages = { };\n    \
             checks = import ./nix/checks.generated.nix {\n      inherit self nixpkgs nixvm-gen;\n    };\n  };\n}\n"
        );
    }

    #[test]
    fn ident_param_and_inline_set() {
        let out = wired("{ inputs = { }; outputs = inputs: { a = 1; }; }");
        assert_eq!(
            out,
            "{ inputs = { nixvm-gen.url = \"github:nixvm-gen/nixvm-gen\"; }; outputs = inputs: { a = 1; \
             checks = import ./nix/checks.generated.nix { inherit (inputs) self nixpkgs nixvm-gen; }; }; }"
        );
    }

    #[test]
    fn crlf_files_stay_crlf() {
        let src = "{\r\n  inputs.nixpkgs.url = \"x\";\r\n  outputs = { self, nixpkgs, ... }@inputs: {\r\n    a = 1;\r\n  };\r\n}\r\n";
        let out = wired(src);
        assert!(!out.replace("\r\n", "").contains('\n'), "bare LF in {out:?}");
        assert!(out.contains("checks = import"), "{out}");
    }

    #[test]
    fn custom_input_name_and_output() {
        let o = WireOptions {
            output: "ci/vm.nix".into(),
            input_name: "vmgen".into(),
            url: "github:x/y".into(),
            hydra_jobs: false,
        };
        let out = wire("{ outputs = { self, nixpkgs, ... }@i: { }; }", &o).unwrap();
        assert_eq!(
            out.text,
            "{ inputs.vmgen.url = \"github:x/y\"; outputs = { self, nixpkgs, ... }@i: { \
             checks = import ./ci/vm.nix { inherit self nixpkgs; vmgen = i.vmgen; }; }; }"
        );
        assert!(wire(&out.text, &o).unwrap().edits.is_empty());
    }

    #[test]
    fn more_shapes() {
        let fp = wired(
            "{ inputs.nixvm-gen.url = \"u\"; outputs = inputs@{ flake-parts, ... }: \
             flake-parts.lib.mkFlake { inherit inputs; } { flake.checks = old; }; }",
        );
        assert!(
            fp.contains("flake.checks = inputs.nixpkgs.lib.recursiveUpdate (old) (import ./nix/checks.generated.nix { inherit (inputs) self nixpkgs nixvm-gen; });"),
            "{fp}"
        );
        let each = wired(
            "{ inputs.nixvm-gen.url = \"u\"; outputs = { self, nixpkgs, flake-utils, nixvm-gen }: \
             flake-utils.lib.eachSystem [ \"x86_64-linux\" ] (sys: let p = 1; in { packages = { }; }); }",
        );
        assert!(
            each.contains("in { packages = { }; checks = (import ./nix/checks.generated.nix { inherit self nixpkgs nixvm-gen; }).${sys} or { }; }"),
            "{each}"
        );
        let with =
            wired("{ inputs.nixvm-gen.url = \"u\"; outputs = { self, ... }@inputs: with inputs; { }; }");
        assert!(with.contains("with inputs; { checks = import"), "{with}");
    }

    #[test]
    fn nixvm_gen_under_another_name_is_refused() {
        for src in [
            "{ inputs.vmgen.url = \"github:nixvm-gen/nixvm-gen\"; outputs = _: { }; }",
            "{ inputs = { vmgen = { url = \"github:nixvm-gen/nixvm-gen\"; }; }; outputs = _: { }; }",
            "{ inputs = { vmgen.url = \"github:nixvm-gen/nixvm-gen/v1\"; }; outputs = _: { }; }",
        ] {
            match wire(src, &opts()) {
                Err(e @ WireError::Unsupported { .. }) => {
                    assert!(e.to_string().contains("--input-name vmgen"), "{e}")
                }
                other => panic!("{src}: {other:?}"),
            }
        }
    }

    /// Whitespace and comments anywhere between tokens never change what
    /// `wire` does, and the edit only ever inserts.
    fn variants(src: &str, choices: &[usize]) -> String {
        const WS: &[&str] = &[" ", "\n  ", " /* c */ ", " # c\n  ", "\n\n    ", "\t"];
        let root = rnix::Root::parse(src).syntax();
        let mut out = String::new();
        let mut i = 0;
        for el in root.descendants_with_tokens() {
            if let rowan::NodeOrToken::Token(t) = el {
                if t.kind() == SyntaxKind::TOKEN_WHITESPACE {
                    out.push_str(WS[choices.get(i).copied().unwrap_or(0) % WS.len()]);
                    i += 1;
                } else {
                    out.push_str(t.text());
                }
            }
        }
        out
    }

    proptest::proptest! {
        #[test]
        fn lossless_under_any_layout(choices in proptest::collection::vec(0usize..6, 0..80), case in 0usize..4) {
            let src = [
                "{ inputs.nixpkgs.url = \"x\"; outputs = { self, nixpkgs, ... }: let a = 1; in { packages = { }; checks = { }; }; }",
                "{ inputs = { nixpkgs.url = \"x\"; }; outputs = inputs@{ flake-parts, ... }: flake-parts.lib.mkFlake { inherit inputs; } { systems = [ ]; flake = { }; }; }",
                "{ outputs = { self, nixpkgs, flake-utils }: flake-utils.lib.eachDefaultSystem (system: { packages = { }; }) // { nixosModules = { }; }; }",
                "{ description = \"d\"; outputs = inputs: rec { a = 1; }; }",
            ][case];
            let text = variants(src, &choices);
            proptest::prop_assume!(rnix::Root::parse(&text).errors().is_empty());
            let out = wire(&text, &opts()).map_err(|e| proptest::test_runner::TestCaseError::fail(format!("{e}\n{text}")))?;
            let diff = similar::TextDiff::from_chars(&text, &out.text);
            proptest::prop_assert!(diff.iter_all_changes().all(|c| c.tag() != similar::ChangeTag::Delete), "{}\n{}", text, out.text);
            let again = wire(&out.text, &opts()).map_err(|e| proptest::test_runner::TestCaseError::fail(e.to_string()))?;
            proptest::prop_assert!(again.edits.is_empty(), "{}", out.text);
        }
    }

    #[test]
    fn binds_inputs_and_merges() {
        let src = "{\n  inputs.nixvm-gen.url = \"u\";\n  outputs = { self, nixpkgs, ... }: {\n    checks = foo;\n  };\n}\n";
        let out = wired(src);
        assert!(out.contains("outputs = { self, nixpkgs, ... }@inputs: {"), "{out}");
        assert!(
            out.contains("checks = nixpkgs.lib.recursiveUpdate (foo) (import ./nix/checks.generated.nix { inherit self nixpkgs; nixvm-gen = inputs.nixvm-gen; });"),
            "{out}"
        );
    }

    #[test]
    fn refusals() {
        for (src, needle) in [
            ("{ outputs = import ./outputs.nix; }", "not a function literal"),
            ("{ outputs = { self, ... }: { checks = system: { }; }; }", "is a function"),
            ("{ outputs = { self, ... }: { checks.x86_64-linux.a = 1; }; }", "attribute by attribute"),
            ("{ outputs = { self, ... }: mk { }; }", "function call"),
            ("{ outputs = { self, ... }: { inherit checks; }; }", "inherited"),
            ("{ inputs = 1; outputs = _: { }; }", "not an attribute set literal"),
            ("[ ]", "not an attribute set"),
            ("{ }", "no `outputs"),
        ] {
            match wire(src, &opts()) {
                Err(e @ WireError::Unsupported { .. }) => {
                    let r = e.render("flake.nix", src, false);
                    assert!(r.contains(needle), "{src}: {r}");
                    assert!(r.contains("checks = import ./nix/checks.generated.nix"), "{r}");
                }
                other => panic!("{src}: {other:?}"),
            }
        }
        assert!(matches!(wire("{ outputs = ", &opts()), Err(WireError::Syntax { .. })));
    }
}
