//! Walking the typed AST of a flake's `outputs` to find `nixosModules`.
//!
//! This is a deliberately tiny "evaluator": it follows parentheses, `let`
//! and `rec` bindings, `//`, `import <path>` (with arguments consumed by the
//! imported file's lambdas), flake-parts' `mkFlake` and flake-utils'
//! `eachSystem` family. Everything else is reported, never guessed: a part
//! of an attribute set that cannot be read statically becomes an [`Opaque`]
//! piece, which turns into an `Unresolved` entry where it matters.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::rc::Rc;

use rnix::TextRange;
use rnix::ast::{self, HasEntry};
use rowan::ast::AstNode;

use crate::diagnostic::{Diagnostic, Sources, Span};
use crate::flake::imports::{FileIx, Files};
use crate::flake::parse::{attr_name, ident_name, literal_path, short_text};
use crate::flake::{Module, ModuleKind, Unresolved};

/// Recursion budget: deep enough for real flakes, small enough that a cyclic
/// `let` or import chain stops quickly and the stack stays small.
const MAX_DEPTH: usize = 64;
/// Work budget of one analysis: real flakes need a few hundred steps; the
/// analysis is linear (issue 11), so 10k aliases (about 20k steps) fit, and
/// exponential `let` bindings still stop within a second or two.
const MAX_STEPS: usize = 50_000;

/// A lexical scope: names bound by `let`, `rec` or a lambda, and `with`.
type Scope = Option<Rc<Frame>>;

struct Frame {
    names: HashMap<String, Slot>,
    parent: Scope,
    /// `let` and `rec`: the values see the frame's own names.
    recursive: bool,
    /// `with e;`: names not bound lexically may come from `e`.
    with: Option<Val>,
}

enum Slot {
    /// `name = expr;` in file.
    Bound(ast::Expr, FileIx),
    /// `inherit (src) name;` in file.
    From(ast::Expr, FileIx),
    /// A function argument, or a binding whose value is not rebuilt.
    Param,
}

/// What a name means.
enum Entry {
    /// A `let`/`rec` binding: its value can be followed.
    Bound(Val),
    /// `let inherit (src) name;`: the attribute `name` of `src`.
    From(Val),
    /// A function argument: its value is unknown.
    Param,
    /// Not bound lexically, but inside `with` (innermost first): Nix looks
    /// the name up in these sets.
    With(Vec<Val>),
}

/// Lexical bindings win over `with` in Nix, whatever the nesting.
fn lookup(scope: &Scope, name: &str) -> Option<Entry> {
    let mut cur = scope;
    let mut withs = Vec::new();
    while let Some(frame) = cur {
        if let Some(w) = &frame.with {
            withs.push(w.clone());
        }
        let own = || if frame.recursive { Some(frame.clone()) } else { frame.parent.clone() };
        match frame.names.get(name) {
            Some(Slot::Bound(expr, file)) => {
                return Some(Entry::Bound(Val { expr: expr.clone(), file: *file, scope: own() }));
            }
            Some(Slot::From(expr, file)) => {
                return Some(Entry::From(Val { expr: expr.clone(), file: *file, scope: own() }));
            }
            Some(Slot::Param) => return Some(Entry::Param),
            None => cur = &frame.parent,
        }
    }
    (!withs.is_empty()).then_some(Entry::With(withs))
}

fn push_frame(parent: &Scope, names: HashMap<String, Slot>, recursive: bool) -> Scope {
    if names.is_empty() {
        parent.clone()
    } else {
        Some(Rc::new(Frame { names, parent: parent.clone(), recursive, with: None }))
    }
}

fn push_with(parent: &Scope, set: Val) -> Scope {
    Some(Rc::new(Frame { names: HashMap::new(), parent: parent.clone(), recursive: false, with: Some(set) }))
}

/// An expression together with where it is and what its names mean.
#[derive(Clone)]
struct Val {
    expr: ast::Expr,
    file: FileIx,
    scope: Scope,
}

/// One attribute key.
#[derive(Clone)]
struct Key {
    /// `None` for a computed name (`${…}`).
    name: Option<String>,
    range: TextRange,
    text: String,
}

/// The value of one attribute, resolved only when needed.
#[derive(Clone)]
enum Value {
    Expr(Val),
    /// `inherit name;` (`from` is `None`) or `inherit (from) name;`.
    Inherit {
        from: Option<Val>,
        name: String,
        scope: Scope,
    },
    /// Known to be unreadable, with the reason.
    Bad(String),
}

/// One `a.b.c = value;` (or `inherit a;`) read from an attribute set.
#[derive(Clone)]
struct Bind {
    keys: Vec<Key>,
    value: Value,
    file: FileIx,
    /// Where the value is written (for aliases: a value reached through a
    /// name is not written here).
    at: TextRange,
    /// The flake-parts module that defines it (0 outside flake-parts): the
    /// module system merges definitions from several modules.
    module: usize,
}

impl Bind {
    fn sub(&self) -> Bind {
        Bind { keys: self.keys[1..].to_vec(), ..self.clone() }
    }
}

/// A part of an attribute set that static analysis cannot see into.
#[derive(Clone)]
struct Opaque {
    reason: String,
    file: FileIx,
    range: TextRange,
}

/// What is known about an attribute set.
#[derive(Clone, Default)]
struct SetView {
    binds: Vec<Bind>,
    opaque: Vec<Opaque>,
}

impl SetView {
    fn opaque(val: &Val, reason: impl Into<String>) -> Self {
        SetView {
            binds: Vec::new(),
            opaque: vec![Opaque {
                reason: reason.into(),
                file: val.file,
                range: val.expr.syntax().text_range(),
            }],
        }
    }
    fn extend(&mut self, other: SetView) {
        self.binds.extend(other.binds);
        self.opaque.extend(other.opaque);
    }
}

/// A module name, whether its definition is written in place, and its order.
type NamedDef = (String, bool, usize);

/// Everything the walk found.
#[derive(Default)]
pub(crate) struct Found {
    pub modules: Vec<Module>,
    pub unresolved: Vec<Unresolved>,
    pub test_files: Vec<PathBuf>,
    pub diagnostics: Vec<Diagnostic>,
}

pub(crate) struct Walker<'a> {
    files: &'a mut Files,
    sources: &'a mut Sources,
    depth: usize,
    steps: usize,
    found: Found,
    /// Modules by name.
    modules: BTreeMap<String, Module>,
    /// Per module name: the definition its value resolves to (file, range),
    /// whether it is written in place, and the definition order. Names that
    /// resolve to the same definition are aliases.
    defs: HashMap<String, (FileIx, TextRange, bool, usize)>,
    /// The flake's outputs, once known: `self.<path>` reads from them.
    outputs: Option<SetView>,
    /// Last flake-parts module id handed out.
    parts_modules: usize,
}

impl<'a> Walker<'a> {
    pub fn new(files: &'a mut Files, sources: &'a mut Sources) -> Self {
        Walker {
            files,
            sources,
            depth: 0,
            steps: 0,
            found: Found::default(),
            modules: BTreeMap::new(),
            defs: HashMap::new(),
            outputs: None,
            parts_modules: 0,
        }
    }

    /// Analyzes the flake whose `flake.nix` is file `flake`.
    pub fn run(mut self, flake: FileIx) -> Found {
        self.flake(flake);
        self.shared_definitions();
        self.check_alias_cycles();
        self.check_aliases();
        self.found.modules = std::mem::take(&mut self.modules).into_values().collect();
        self.found
            .unresolved
            .sort_by(|a, b| (&a.file, a.line, a.column, &a.what).cmp(&(&b.file, b.line, b.column, &b.what)));
        self.found
    }

    fn flake(&mut self, ix: FileIx) {
        let loaded = self.files.get(ix);
        if loaded.broken {
            // The syntax diagnostics say what to fix; results from a
            // recovered tree would be guesses.
            return;
        }
        let id = loaded.id;
        let Some(root) = loaded.root.clone() else {
            self.found.diagnostics.push(
                Diagnostic::error("flake_empty", None, format!("{} is empty", loaded.rel.display()))
                    .with_hint("a flake is an attribute set with `inputs` and `outputs`"),
            );
            return;
        };
        let root_val = Val { expr: root.clone(), file: ix, scope: None };
        let inner = self.peel(&root_val);
        let ast::Expr::AttrSet(_) = inner.expr else {
            self.found.diagnostics.push(
                Diagnostic::error(
                    "flake_not_attrset",
                    Some(Span::new(id, root.syntax().text_range())),
                    "flake.nix must be an attribute set",
                )
                .with_label("expected `{ inputs = …; outputs = …; }`")
                .with_hint(
                    "Nix reads flake.nix as `{ description = …; inputs = …; outputs = inputs: { … }; }`",
                ),
            );
            return;
        };
        let view = self.set_view(&inner);
        let outputs: Vec<Bind> = view.binds.into_iter().filter(|b| key_is(&b.keys, 0, "outputs")).collect();
        let Some(out) = outputs.last() else {
            self.found.diagnostics.push(
                Diagnostic::error(
                    "flake_no_outputs",
                    Some(Span::new(id, TextRange::empty(root.syntax().text_range().start()))),
                    "flake.nix has no `outputs`",
                )
                .with_label("this attribute set")
                .with_hint("add `outputs = { self, ... }: { nixosModules.default = ./module.nix; };`"),
            );
            return;
        };
        let body = match self.value_of(&out.value) {
            Ok(v) if out.keys.len() == 1 => self.apply_function(&v, 1),
            Ok(v) => {
                Err(format!("`outputs` is set attribute by attribute (`{}`)", short_text(v.expr.syntax())))
            }
            Err(e) => Err(e),
        };
        let outputs_view = match body {
            Ok(body) => self.set_view(&body),
            Err(reason) => {
                let key = &out.keys[0];
                self.unresolved("outputs", out.file, key.range, reason);
                return;
            }
        };
        self.outputs = Some(outputs_view.clone());
        self.outputs_of(outputs_view);
    }

    /// Reads the module and test lists out of the outputs attribute set.
    fn outputs_of(&mut self, view: SetView) {
        let modules = self.select(&view, "nixosModules");
        self.modules_from(modules);
        for b in view.binds.iter().filter(|b| key_is(&b.keys, 0, "nixosModule")) {
            let key = &b.keys[0];
            self.found.diagnostics.push(
                Diagnostic::warning(
                    "legacy_nixos_module",
                    Some(Span::new(self.files.get(b.file).id, key.range)),
                    "`nixosModule` is a deprecated flake output and is not used for tests",
                )
                .with_label("deprecated")
                .with_hint("rename it to `nixosModules.default` (Nix itself warns about `nixosModule`)"),
            );
        }
        for b in view.binds.iter().filter(|b| key_is(&b.keys, 0, "nixvmTests")) {
            self.test_list(b);
        }
    }

    fn test_list(&mut self, b: &Bind) {
        let key = &b.keys[0];
        let val = if b.keys.len() == 1 {
            self.value_of(&b.value).and_then(|v| self.whnf(&v))
        } else {
            Err("`nixvmTests` must be a list of paths, not an attribute set".to_string())
        };
        let list = match val {
            Ok(Val { expr: ast::Expr::List(l), file, .. }) => (l, file),
            Ok(other) => {
                let reason = format!(
                    "`nixvmTests` must be a literal list of paths, found `{}`",
                    short_text(other.expr.syntax())
                );
                return self.unresolved("nixvmTests", b.file, key.range, reason);
            }
            Err(reason) => return self.unresolved("nixvmTests", b.file, key.range, reason),
        };
        let (list, file) = list;
        for item in list.items() {
            match literal_path(&item) {
                Some(lit) => {
                    let abs = self.files.resolve(file, &lit);
                    let rel = self.files.rel(&abs);
                    self.found.test_files.push(rel);
                }
                None => {
                    let reason = format!(
                        "list item `{}` is not a literal path like `./tests/vm/a.nix`",
                        short_text(item.syntax())
                    );
                    self.unresolved("nixvmTests", file, item.syntax().text_range(), reason);
                }
            }
        }
    }

    /// Records the modules of a `nixosModules` attribute set.
    fn modules_from(&mut self, view: SetView) {
        for o in &view.opaque {
            self.unresolved("nixosModules", o.file, o.range, o.reason.clone());
        }
        // Group by module name, keeping definition order.
        let mut order: Vec<String> = Vec::new();
        let mut groups: HashMap<String, Vec<&Bind>> = HashMap::new();
        for b in &view.binds {
            let Some(key) = b.keys.first() else { continue };
            match &key.name {
                Some(name) => {
                    if !groups.contains_key(name) {
                        order.push(name.clone());
                    }
                    groups.entry(name.clone()).or_default().push(b);
                }
                None => {
                    let reason = format!("the module name `{}` is computed", key.text);
                    self.unresolved(&format!("nixosModules.{}", key.text), b.file, key.range, reason);
                }
            }
        }
        for (n, name) in order.into_iter().enumerate() {
            let binds = groups.remove(&name).unwrap_or_default();
            let Some(first) = binds.first().copied() else { continue };
            let mut parts: Vec<usize> = binds.iter().map(|b| b.module).collect();
            parts.dedup();
            // A whole definition (`name = …;`) wins; `name.imports = …;`
            // style definitions build an inline module (Nix merges them
            // into a whole attribute set literal, or rejects them).
            let whole = binds.iter().rev().find(|b| b.keys.len() == 1).copied();
            let last = whole.unwrap_or(first);
            let key = last.keys[0].clone();
            let dotted: Vec<Bind> = binds.iter().filter(|b| b.keys.len() > 1).map(|b| b.sub()).collect();
            let kind = if parts.len() > 1 {
                let (file, line, column) = self.location(first.file, first.keys[0].range);
                ModuleKind::Computed {
                    reason: format!(
                        "defined in {} flake-parts modules (first at {}:{line}:{column}); the module system merges them",
                        parts.len(),
                        file.display()
                    ),
                }
            } else if let Some(whole) = whole {
                match self.value_of(&whole.value).and_then(|v| self.classify(&v)) {
                    Ok((kind, def)) => {
                        let direct =
                            def.file == whole.file && whole.at.contains_range(def.expr.syntax().text_range());
                        let kind = match (&kind, &def.expr) {
                            (ModuleKind::Inline, ast::Expr::AttrSet(_)) => {
                                let mut sub = self.set_view(&def);
                                sub.binds.extend(dotted);
                                self.module_set(&sub).unwrap_or(kind)
                            }
                            _ => kind,
                        };
                        if kind.is_module() {
                            self.defs
                                .insert(name.clone(), (def.file, def.expr.syntax().text_range(), direct, n));
                        }
                        kind
                    }
                    Err(reason) => {
                        // `let m = mkModule …; in { a = m; b = m; }`: still one module.
                        if let Ok(def) = self.value_of(&whole.value).and_then(|v| self.deref(&v)) {
                            let direct = def.file == whole.file
                                && whole.at.contains_range(def.expr.syntax().text_range());
                            self.defs
                                .insert(name.clone(), (def.file, def.expr.syntax().text_range(), direct, n));
                        }
                        ModuleKind::Computed { reason }
                    }
                }
            } else {
                let sub = SetView { binds: dotted, opaque: Vec::new() };
                self.module_set(&sub).unwrap_or(ModuleKind::Inline)
            };
            self.check_source_exists(&name, &kind, last.file, key.range);
            let (file, line, column) = self.location(last.file, key.range);
            self.modules.insert(name.clone(), Module { name, file, line, column, kind });
        }
    }

    /// `Some(ModuleSet)` when the attribute set `view` is a set of modules
    /// rather than a module: every attribute is a module file, an import or
    /// a function, and none is a module's own key (`imports`, `options`, …).
    /// Configuration attributes (`services.x.enable = true;`) are values or
    /// nested sets, so they do not qualify.
    fn module_set(&mut self, view: &SetView) -> Option<ModuleKind> {
        const MODULE_KEYS: &[&str] = &[
            "imports",
            "options",
            "config",
            "_file",
            "key",
            "meta",
            "disabledModules",
            "_class",
            "freeformType",
        ];
        if !view.opaque.is_empty() || view.binds.is_empty() {
            return None;
        }
        let mut members = Vec::new();
        for b in &view.binds {
            let name = b.keys.first()?.name.clone()?;
            if MODULE_KEYS.contains(&name.as_str()) || b.keys.len() > 1 {
                return None;
            }
            let (kind, def) = self.value_of(&b.value).and_then(|v| self.classify(&v)).ok()?;
            let module_file = |s: &PathBuf| s.extension().is_none_or(|e| e == "nix");
            match &kind {
                ModuleKind::Path { source }
                | ModuleKind::Import { source }
                | ModuleKind::ImportApply { source }
                    if module_file(source) => {}
                ModuleKind::Alias { .. } => {}
                ModuleKind::Inline if matches!(def.expr, ast::Expr::Lambda(_)) => {}
                _ => return None,
            }
            if !members.contains(&name) {
                members.push(name);
            }
        }
        Some(ModuleKind::ModuleSet { members })
    }

    /// Names whose values resolve to the same definition (`rec { a = …;
    /// default = a; }`, `let m = …; in { a = m; b = m; }`) are one module:
    /// the name written in place (or the first, preferring one that is not
    /// `default`) keeps it, the others become aliases of it.
    fn shared_definitions(&mut self) {
        let mut by_def: BTreeMap<(FileIx, u32, u32), Vec<NamedDef>> = BTreeMap::new();
        for (name, (file, range, direct, n)) in &self.defs {
            by_def.entry((*file, range.start().into(), range.end().into())).or_default().push((
                name.clone(),
                *direct,
                *n,
            ));
        }
        for mut names in by_def.into_values().filter(|v| v.len() > 1) {
            names.sort_by_key(|(name, direct, n)| (!direct, name == "default", *n));
            let target = names[0].0.clone();
            for (name, _, _) in &names[1..] {
                if let Some(m) = self.modules.get_mut(name) {
                    m.kind = ModuleKind::Alias { target: target.clone() };
                }
            }
        }
    }

    /// A module file that does not exist fails only when a test imports
    /// the module; say so now, at the definition.
    fn check_source_exists(&mut self, name: &str, kind: &ModuleKind, file: FileIx, range: TextRange) {
        let (ModuleKind::Path { source }
        | ModuleKind::Import { source }
        | ModuleKind::ImportApply { source }) = kind
        else {
            return;
        };
        if self.files.root.join(source).exists() {
            return;
        }
        self.found.diagnostics.push(
            Diagnostic::warning(
                "missing_module_file",
                Some(Span::new(self.files.get(file).id, range)),
                format!("module `{name}` is `{}`, which does not exist", source.display()),
            )
            .with_label("defined here")
            .with_hint(
                "create the file or fix the path (paths are relative to the file they are written in)",
            ),
        );
    }

    /// Aliases must point to a module that exists. An alias of a set of
    /// modules is a set of modules too (not importable).
    fn check_aliases(&mut self) {
        let sets: Vec<(String, ModuleKind)> = self
            .modules
            .values()
            .filter_map(|m| {
                let target = self.modules.get(m.kind.alias_target()?)?;
                (!target.kind.is_module()).then(|| (m.name.clone(), target.kind.clone()))
            })
            .collect();
        for (name, kind) in sets {
            if let Some(m) = self.modules.get_mut(&name) {
                m.kind = kind;
            }
        }
        let names: Vec<String> = self.modules.keys().cloned().collect();
        let bad: Vec<(String, String)> = self
            .modules
            .values()
            .filter_map(|m| {
                m.kind
                    .alias_target()
                    .filter(|t| !self.modules.contains_key(*t))
                    .map(|t| (m.name.clone(), t.to_string()))
            })
            .collect();
        for (name, target) in bad {
            let Some(m) = self.modules.remove(&name) else { continue };
            // An unresolved entry may well define the target.
            let pending = self
                .found
                .unresolved
                .iter()
                .find(|u| u.what == format!("nixosModules.{target}"))
                .or_else(|| self.found.unresolved.iter().find(|u| u.what == "nixosModules"))
                .map(|u| format!("{}:{}:{}", u.file.display(), u.line, u.column));
            let reason = match pending {
                Some(at) => format!(
                    "refers to `self.nixosModules.{target}`, which static analysis could not resolve (see the unresolved entry at {at})"
                ),
                None => {
                    let similar = names
                        .iter()
                        .filter(|n| **n != name)
                        .map(|n| (strsim::jaro_winkler(n, &target), n))
                        .filter(|(s, _)| *s > 0.8)
                        .max_by(|a, b| a.0.total_cmp(&b.0))
                        .map(|(_, n)| format!(" (did you mean `{n}`?)"))
                        .unwrap_or_default();
                    format!(
                        "refers to `self.nixosModules.{target}`, which the flake does not define{similar}"
                    )
                }
            };
            self.found.unresolved.push(Unresolved {
                what: format!("nixosModules.{name}"),
                file: m.file,
                line: m.line,
                column: m.column,
                reason,
            });
        }
    }

    /// Aliases that lead back to themselves (`a = self.nixosModules.b;
    /// b = self.nixosModules.a;`) name no module at all: Nix would fail with
    /// infinite recursion, so they are reported instead of generated.
    fn check_alias_cycles(&mut self) {
        let target_of =
            |name: &str| self.modules.get(name).and_then(|m| m.kind.alias_target()).map(str::to_string);
        // Linear: each name is walked once (issue 11: re-walking every chain
        // from every start was cubic in the length of an alias chain).
        let mut cyclic: Vec<(String, String)> = Vec::new();
        let mut done: HashMap<String, bool> = HashMap::new(); // false: on the current path
        for start in self.modules.keys() {
            if done.contains_key(start) {
                continue;
            }
            let mut path: Vec<String> = vec![start.clone()];
            done.insert(start.clone(), false);
            while let Some(next) = target_of(path.last().expect("non-empty")) {
                match done.get(&next) {
                    Some(true) => break,
                    Some(false) => {
                        let at = path.iter().position(|n| *n == next).unwrap_or(0);
                        let cycle = &path[at..];
                        for i in 0..cycle.len() {
                            cyclic.push((cycle[i].clone(), cycle_text(cycle, i)));
                        }
                        break;
                    }
                    None => {
                        done.insert(next.clone(), false);
                        path.push(next);
                    }
                }
            }
            for n in path {
                done.insert(n, true);
            }
        }
        for (name, chain) in cyclic {
            let Some(m) = self.modules.remove(&name) else { continue };
            self.found.unresolved.push(Unresolved {
                what: format!("nixosModules.{name}"),
                file: m.file,
                line: m.line,
                column: m.column,
                reason: format!(
                    "aliases form a cycle ({chain}), so no module is defined; point one of them at a module"
                ),
            });
        }
    }

    // --- module values -------------------------------------------------

    /// What kind of module a value is, and the definition it resolves to.
    fn classify(&mut self, val: &Val) -> Result<(ModuleKind, Val), String> {
        self.enter()?;
        let r = self.classify_inner(val);
        self.depth -= 1;
        r
    }

    fn classify_inner(&mut self, val: &Val) -> Result<(ModuleKind, Val), String> {
        let v = self.deref(val)?;
        let kind = match &v.expr {
            ast::Expr::AttrSet(_) | ast::Expr::Lambda(_) => ModuleKind::Inline,
            ast::Expr::PathRel(_) | ast::Expr::PathAbs(_) => {
                let source = self.path_source(&v)?;
                ModuleKind::Path { source }
            }
            ast::Expr::PathHome(_) | ast::Expr::PathSearch(_) => {
                return Err(format!(
                    "`{}` depends on the machine, not on the flake",
                    short_text(v.expr.syntax())
                ));
            }
            ast::Expr::Apply(app) => {
                let (head, args) = flatten_apply(app);
                let name = head_name(&head);
                let first =
                    args.first().map(|a| Val { expr: a.clone(), file: v.file, scope: v.scope.clone() });
                match (name.as_deref(), first) {
                    (Some("import"), Some(arg)) if is_import_head(&head, &v.scope) => {
                        let arg = self.deref(&arg)?;
                        ModuleKind::Import { source: self.path_source(&arg)? }
                    }
                    (Some("importApply"), Some(arg)) => {
                        let arg = self.deref(&arg)?;
                        ModuleKind::ImportApply { source: self.path_source(&arg)? }
                    }
                    (Some("import"), Some(_)) if matches!(head, ast::Expr::Ident(_)) => {
                        return Err("`import` is rebound in this file (`import = …`), so this calls that function, not Nix's `import`".to_string());
                    }
                    _ => {
                        return Err(format!(
                            "the value is computed by a function call (`{}`)",
                            short_text(head.syntax())
                        ));
                    }
                }
            }
            ast::Expr::Select(sel) => match self_module_ref(sel, &v.scope) {
                Some(target) => ModuleKind::Alias { target },
                None => {
                    return Err(format!(
                        "refers to `{}`, which is not a module of this flake (another flake's value or a function argument)",
                        short_text(sel.syntax())
                    ));
                }
            },
            ast::Expr::Ident(i) => return Err(self.unknown_name(&ident_name(i), &v.scope)),
            ast::Expr::BinOp(_) => {
                return Err(format!(
                    "the value is computed with an operator (`{}`)",
                    short_text(v.expr.syntax())
                ));
            }
            ast::Expr::IfElse(_) => return Err("the value is chosen by `if … then … else`".to_string()),
            _ => {
                return Err(format!(
                    "`{}` is not a module (a path, an attribute set or a function)",
                    short_text(v.expr.syntax())
                ));
            }
        };
        Ok((kind, v))
    }

    /// Why the name `name` (which [`Self::deref`] could not follow) has no
    /// known value.
    fn unknown_name(&self, name: &str, scope: &Scope) -> String {
        match lookup(scope, name) {
            Some(Entry::Param) => format!("refers to `{name}`, which is a function argument"),
            Some(Entry::With(_)) => {
                format!("refers to `{name}`, which comes from a `with` set that needs evaluation")
            }
            _ => format!("refers to `{name}`, which is not bound in this file"),
        }
    }

    /// The module file a path literal names, relative to the flake root.
    fn path_source(&mut self, v: &Val) -> Result<PathBuf, String> {
        let Some(lit) = literal_path(&v.expr) else {
            return Err(format!("the path `{}` is computed", short_text(v.expr.syntax())));
        };
        let abs = self.files.resolve(v.file, &lit);
        Ok(self.files.rel(&Files::module_file(&abs)))
    }

    // --- attribute sets ------------------------------------------------

    /// The attributes under `name` in `view` (`name = { … }` and `name.x = …`
    /// both count). Opaque parts of `view` may hide `name` too, so they
    /// carry over, and so does an attribute whose name is computed.
    fn select(&mut self, view: &SetView, name: &str) -> SetView {
        let mut out = SetView { binds: Vec::new(), opaque: view.opaque.clone() };
        for b in &view.binds {
            let Some(key) = b.keys.first() else { continue };
            if key.name.is_none() {
                out.opaque.push(Opaque {
                    reason: format!("the attribute name `{}` is computed; it may be `{name}`", key.text),
                    file: b.file,
                    range: key.range,
                });
                continue;
            }
            if !key_is(&b.keys, 0, name) {
                continue;
            }
            if b.keys.len() > 1 {
                out.binds.push(b.sub());
                continue;
            }
            match self.value_of(&b.value) {
                Ok(v) => {
                    let mut sub = self.set_view(&v);
                    for s in &mut sub.binds {
                        s.module = b.module;
                    }
                    out.extend(sub);
                }
                Err(reason) => out.opaque.push(Opaque { reason, file: b.file, range: key.range }),
            }
        }
        out
    }

    /// What is statically known about the attribute set `val` evaluates to.
    fn set_view(&mut self, val: &Val) -> SetView {
        if let Err(reason) = self.enter() {
            return SetView::opaque(val, reason);
        }
        let r = self.set_view_inner(val);
        self.depth -= 1;
        r
    }

    fn set_view_inner(&mut self, val: &Val) -> SetView {
        let v = match self.whnf(val) {
            Ok(v) => v,
            Err(reason) => return SetView::opaque(val, reason),
        };
        match &v.expr {
            ast::Expr::AttrSet(set) => self.attrset(set, &v),
            // `a // b` is a shallow update: a name `b` defines replaces all
            // of `a`'s definition of it.
            ast::Expr::BinOp(op) if op.operator() == Some(ast::BinOpKind::Update) => {
                let side =
                    |e: Option<ast::Expr>| e.map(|expr| Val { expr, file: v.file, scope: v.scope.clone() });
                let mut lhs = match side(op.lhs()) {
                    Some(l) => self.set_view(&l),
                    None => SetView::default(),
                };
                let rhs = match side(op.rhs()) {
                    Some(r) => self.set_view(&r),
                    None => SetView::default(),
                };
                let replaced: Vec<&str> =
                    rhs.binds.iter().filter_map(|b| b.keys.first()?.name.as_deref()).collect();
                lhs.binds.retain(|b| {
                    b.keys.first().and_then(|k| k.name.as_deref()).is_none_or(|n| !replaced.contains(&n))
                });
                lhs.extend(rhs);
                lhs
            }
            ast::Expr::Apply(app) => self.apply_view(app, &v),
            ast::Expr::Lambda(_) => {
                SetView::opaque(&v, "this is a function, where an attribute set is expected")
            }
            ast::Expr::Select(sel) => match (self_output_path(sel, &v.scope), self.outputs.clone()) {
                // `self.modules.nixos`: another attribute of the outputs.
                (Some(path), Some(outputs)) => {
                    path.iter().fold(outputs, |view, name| self.select(&view, name))
                }
                _ => SetView::opaque(
                    &v,
                    format!("refers to `{}`, which needs evaluation", short_text(sel.syntax())),
                ),
            },
            ast::Expr::Ident(i) => SetView::opaque(&v, self.unknown_name(&ident_name(i), &v.scope)),
            ast::Expr::IfElse(_) => SetView::opaque(&v, "the value is chosen by `if … then … else`"),
            ast::Expr::BinOp(_) | ast::Expr::UnaryOp(_) => SetView::opaque(
                &v,
                format!("the value is computed with an operator (`{}`)", short_text(v.expr.syntax())),
            ),
            ast::Expr::LegacyLet(_) => {
                SetView::opaque(&v, "the legacy `let { … }` form is not read statically; use `let … in`")
            }
            _ => SetView::opaque(&v, format!("`{}` is not an attribute set", short_text(v.expr.syntax()))),
        }
    }

    fn attrset(&mut self, set: &ast::AttrSet, v: &Val) -> SetView {
        let mut view = SetView::default();
        // In `rec { … }` the set's own attributes are in scope.
        let scope = if set.rec_token().is_some() {
            push_frame(&v.scope, let_names(set, v.file), true)
        } else {
            v.scope.clone()
        };
        for entry in set.entries() {
            match entry {
                ast::Entry::AttrpathValue(apv) => {
                    let (Some(path), Some(value)) = (apv.attrpath(), apv.value()) else { continue };
                    let keys = keys_of(&path);
                    if keys.is_empty() {
                        continue;
                    }
                    let at = value.syntax().text_range();
                    view.binds.push(Bind {
                        keys,
                        value: Value::Expr(Val { expr: value, file: v.file, scope: scope.clone() }),
                        file: v.file,
                        at,
                        module: 0,
                    });
                }
                ast::Entry::Inherit(inh) => {
                    let from = inh.from().and_then(|f| f.expr()).map(|expr| Val {
                        expr,
                        file: v.file,
                        scope: scope.clone(),
                    });
                    for attr in inh.attrs() {
                        let key = key_of(&attr);
                        let value = match key.name.clone() {
                            // `inherit` names are looked up outside a `rec` set.
                            Some(name) => Value::Inherit { from: from.clone(), name, scope: v.scope.clone() },
                            None => Value::Bad(format!("the inherited name `{}` is computed", key.text)),
                        };
                        let at = key.range;
                        view.binds.push(Bind { keys: vec![key], value, file: v.file, at, module: 0 });
                    }
                }
            }
        }
        view
    }

    /// The value of an attribute, following `inherit`.
    fn value_of(&mut self, value: &Value) -> Result<Val, String> {
        match value {
            Value::Expr(v) => Ok(v.clone()),
            Value::Bad(reason) => Err(reason.clone()),
            Value::Inherit { from: Some(src), name, .. } => self
                .attr_of(src, name)
                .map_err(|e| format!("`inherit ({}) {name};`: {e}", short_text(src.expr.syntax()))),
            Value::Inherit { from: None, name, scope } => match lookup(scope, name) {
                Some(Entry::Bound(val)) => Ok(val),
                Some(Entry::From(src)) => self.attr_of(&src, name),
                Some(Entry::Param) => Err(format!("`inherit {name};` takes a function argument")),
                Some(Entry::With(sets)) => self.lookup_with(&sets, name),
                None => Err(format!("`inherit {name};` refers to a name not bound in this file")),
            },
        }
    }

    /// The attribute `name` of the attribute set `src` evaluates to.
    fn attr_of(&mut self, src: &Val, name: &str) -> Result<Val, String> {
        self.enter()?;
        let view = self.set_view(src);
        self.depth -= 1;
        self.attr_in(&view, name, &short_text(src.expr.syntax()))
    }

    /// The attribute `name` of the set `view` (written `src` in messages).
    fn attr_in(&mut self, view: &SetView, name: &str, src: &str) -> Result<Val, String> {
        let binds: Vec<&Bind> = view.binds.iter().filter(|b| key_is(&b.keys, 0, name)).collect();
        if let Some(o) = view.opaque.first() {
            return Err(format!("`{name}` is read from a set that needs evaluation ({})", o.reason));
        }
        match binds.as_slice() {
            [] => Err(format!("`{src}` has no attribute `{name}`")),
            [b] if b.keys.len() == 1 => {
                let value = b.value.clone();
                self.value_of(&value)
            }
            _ => Err(format!("`{name}` is built attribute by attribute")),
        }
    }

    /// A name that only `with` provides: the innermost `with` set that has
    /// it (Nix's rule), as far as static analysis can tell.
    fn lookup_with(&mut self, sets: &[Val], name: &str) -> Result<Val, String> {
        for set in sets {
            self.enter()?;
            let view = self.set_view(set);
            self.depth -= 1;
            let with = short_text(set.expr.syntax());
            if view.binds.iter().any(|b| key_is(&b.keys, 0, name)) {
                return self.attr_of(set, name).map_err(|e| format!("`{name}` from `with {with};`: {e}"));
            }
            if !view.opaque.is_empty() {
                return Err(format!("`{name}` may come from `with {with};`, which needs evaluation"));
            }
        }
        Err(format!("`{name}` is not bound in this file, nor by the `with` sets around it"))
    }

    /// `f a b` where an attribute set is expected: flake-parts and
    /// flake-utils are understood, anything else is opaque.
    fn apply_view(&mut self, app: &ast::Apply, v: &Val) -> SetView {
        let (head, args) = flatten_apply(app);
        let name = head_name(&head).unwrap_or_default();
        let arg =
            |i: usize| args.get(i).map(|a| Val { expr: a.clone(), file: v.file, scope: v.scope.clone() });
        match name.as_str() {
            // flake-parts: `mkFlake { inherit inputs; } module`
            "mkFlake" if args.len() == 2 => match arg(1) {
                Some(module) => self.flake_parts(&module),
                None => SetView::opaque(v, "`mkFlake` without a module"),
            },
            // flake-utils: per-system outputs (`packages.<system>.…`); a
            // `nixosModules` in there would be per-system, which is wrong.
            "eachDefaultSystem" | "eachSystem" | "eachDefaultSystemMap" | "eachSystemMap" => {
                let f = args.last().map(|a| Val { expr: a.clone(), file: v.file, scope: v.scope.clone() });
                let body = match f {
                    Some(f) => self.apply_function(&f, 1),
                    None => Err(format!("`{name}` without a function")),
                };
                let inner = match body {
                    Ok(body) => self.set_view(&body),
                    Err(reason) => SetView::opaque(
                        v,
                        format!("the per-system outputs of `{name}` cannot be read: {reason}"),
                    ),
                };
                for b in inner.binds.iter().filter(|b| key_is(&b.keys, 0, "nixosModules")) {
                    self.unresolved(
                        "nixosModules",
                        b.file,
                        b.keys[0].range,
                        format!("`nixosModules` inside `{name}` becomes `nixosModules.<system>.…`; define it next to `{name} …` with `//`"),
                    );
                }
                // What cannot be read may still be a (per-system) `nixosModules`.
                SetView { binds: Vec::new(), opaque: inner.opaque }
            }
            // flake-utils: the function's result is merged as is.
            "eachDefaultSystemPassThrough" | "eachSystemPassThrough" => {
                match args.last().map(|a| Val { expr: a.clone(), file: v.file, scope: v.scope.clone() }) {
                    Some(f) => match self.apply_function(&f, 1) {
                        Ok(body) => self.set_view(&body),
                        Err(reason) => SetView::opaque(&f, reason),
                    },
                    None => SetView::opaque(v, format!("`{name}` without a function")),
                }
            }
            _ => SetView::opaque(
                v,
                format!("the value is computed by a function call (`{}`)", short_text(head.syntax())),
            ),
        }
    }

    /// The flake outputs defined by a flake-parts module (its `flake`
    /// option, also written `config.flake` or `config = { flake = …; }`),
    /// following `imports = [ ./file.nix (importApply ./x.nix { … }) … ]`.
    fn flake_parts(&mut self, module: &Val) -> SetView {
        if let Err(reason) = self.enter() {
            return SetView::opaque(module, reason);
        }
        let r = self.flake_parts_inner(module);
        self.depth -= 1;
        r
    }

    fn flake_parts_inner(&mut self, module: &Val) -> SetView {
        let module = match self.parts_module(module) {
            Ok(m) => m,
            Err(reason) => return SetView::opaque(module, reason),
        };
        let body = match self.whnf(&module) {
            Ok(v) if matches!(v.expr, ast::Expr::Lambda(_)) => match self.apply_function(&v, 1) {
                Ok(b) => b,
                Err(reason) => return SetView::opaque(&v, reason),
            },
            Ok(v) => v,
            Err(reason) => return SetView::opaque(&module, reason),
        };
        self.parts_modules += 1;
        let id = self.parts_modules;
        let view = self.set_view(&body);
        let config = self.select(&SetView { binds: view.binds.clone(), opaque: Vec::new() }, "config");
        let mut own = SetView { binds: Vec::new(), opaque: view.opaque.clone() };
        for b in view.binds.iter().chain(&config.binds) {
            if key_is(&b.keys, 0, "flake") {
                let sub = self.flake_option(b);
                own.extend(sub);
            }
        }
        own.opaque.extend(config.opaque);
        for b in &mut own.binds {
            b.module = id;
        }
        let mut out = own;
        for b in view.binds.iter().filter(|b| key_is(&b.keys, 0, "imports") && b.keys.len() == 1) {
            let sub = self.parts_imports(b);
            out.extend(sub);
        }
        out
    }

    /// A flake-parts module as written in `imports` or given to `mkFlake`:
    /// a path is that file's value, `importApply ./x.nix args` (any
    /// spelling of the lib) that file applied to `args`.
    fn parts_module(&mut self, module: &Val) -> Result<Val, String> {
        let peeled = self.deref(module)?;
        if let Some(lit) = literal_path(&peeled.expr) {
            return self.load_root(peeled.file, &lit);
        }
        if let ast::Expr::Apply(app) = &peeled.expr {
            let (head, args) = flatten_apply(app);
            if head_name(&head).as_deref() == Some("importApply") && args.len() == 2 {
                let path = self.deref(&Val { expr: args[0].clone(), ..peeled.clone() })?;
                let Some(lit) = literal_path(&path.expr) else {
                    return Err(format!(
                        "`importApply` of a computed path (`{}`)",
                        short_text(args[0].syntax())
                    ));
                };
                let root = self.load_root(path.file, &lit)?;
                return self.apply_function(&root, 1);
            }
        }
        Ok(peeled)
    }

    /// The outputs one `flake…` definition of a flake-parts module sets.
    fn flake_option(&mut self, b: &Bind) -> SetView {
        if b.keys.len() > 1 {
            return SetView { binds: vec![b.sub()], opaque: Vec::new() };
        }
        // `flake` is a submodule: an attribute set or a function.
        match self.value_of(&b.value).and_then(|v| self.whnf(&v)) {
            Ok(f) if matches!(f.expr, ast::Expr::Lambda(_)) => match self.apply_function(&f, 1) {
                Ok(body) => self.set_view(&body),
                Err(reason) => SetView::opaque(&f, reason),
            },
            Ok(set) => self.set_view(&set),
            Err(reason) => SetView {
                binds: Vec::new(),
                opaque: vec![Opaque { reason, file: b.file, range: b.keys[0].range }],
            },
        }
    }

    /// `imports = [ … ]` of a flake-parts module: local modules are
    /// followed; anything else (`inputs.x.flakeModule`, a computed list)
    /// could define `flake.nixosModules` too, so it is reported.
    fn parts_imports(&mut self, b: &Bind) -> SetView {
        let mut out = SetView::default();
        let list = self.value_of(&b.value).and_then(|v| self.whnf(&v));
        let list = match list {
            Ok(list) => match &list.expr {
                ast::Expr::List(_) => list,
                _ => {
                    let reason =
                        format!("flake-parts `imports` is computed (`{}`)", short_text(list.expr.syntax()));
                    out.opaque.push(Opaque { reason, file: b.file, range: b.keys[0].range });
                    return out;
                }
            },
            Err(reason) => {
                out.opaque.push(Opaque { reason, file: b.file, range: b.keys[0].range });
                return out;
            }
        };
        let ast::Expr::List(items) = &list.expr else { return out };
        for item in items.items() {
            let range = item.syntax().text_range();
            let item = Val { expr: item, file: list.file, scope: list.scope.clone() };
            let local = match self.parts_module(&item).and_then(|m| self.whnf(&m)) {
                Ok(m) => matches!(m.expr, ast::Expr::AttrSet(_) | ast::Expr::Lambda(_)).then_some(m),
                Err(_) => None,
            };
            match local {
                Some(m) => {
                    let sub = self.flake_parts(&m);
                    out.extend(sub);
                }
                None => out.opaque.push(Opaque {
                    reason: format!(
                        "flake-parts imports `{}`, which is not followed (another flake's module or a computed value); it may define `flake.nixosModules`",
                        short_text(item.expr.syntax())
                    ),
                    file: item.file,
                    range,
                }),
            }
        }
        out
    }

    // --- values --------------------------------------------------------

    /// Follows parentheses, `let … in`, `with … ;`, `assert` and
    /// `let`-bound names.
    fn peel(&self, val: &Val) -> Val {
        let mut v = val.clone();
        for _ in 0..MAX_DEPTH {
            match &v.expr {
                ast::Expr::Paren(p) => match p.expr() {
                    Some(e) => v = Val { expr: e, ..v },
                    None => return v,
                },
                ast::Expr::LetIn(l) => {
                    let Some(body) = l.body() else { return v };
                    let scope = push_frame(&v.scope, let_names(l, v.file), true);
                    v = Val { expr: body, file: v.file, scope };
                }
                ast::Expr::Ident(i) => match lookup(&v.scope, &ident_name(i)) {
                    Some(Entry::Bound(b)) => v = b,
                    _ => return v,
                },
                ast::Expr::With(w) => match (w.namespace(), w.body()) {
                    (Some(ns), Some(body)) => {
                        let set = Val { expr: ns, file: v.file, scope: v.scope.clone() };
                        v = Val { expr: body, file: v.file, scope: push_with(&v.scope, set) };
                    }
                    _ => return v,
                },
                // `assert c; e` is `e` (or an evaluation error).
                ast::Expr::Assert(a) => match a.body() {
                    Some(body) => v = Val { expr: body, ..v },
                    None => return v,
                },
                _ => return v,
            }
        }
        v
    }

    /// [`Self::peel`] plus names from `inherit (src) name;` and `with`, and
    /// `set.attr` of a set that can be read.
    fn deref(&mut self, val: &Val) -> Result<Val, String> {
        self.enter()?;
        let r = self.deref_inner(val);
        self.depth -= 1;
        r
    }

    fn deref_inner(&mut self, val: &Val) -> Result<Val, String> {
        let v = self.peel(val);
        match &v.expr {
            ast::Expr::Ident(i) => {
                let name = ident_name(i);
                match lookup(&v.scope, &name) {
                    Some(Entry::From(src)) => {
                        let next = self.attr_of(&src, &name)?;
                        self.deref(&next)
                    }
                    Some(Entry::With(sets)) => {
                        let next = self.lookup_with(&sets, &name)?;
                        self.deref(&next)
                    }
                    _ => Ok(v),
                }
            }
            // `self.homeManagerModules.x`, `self.nixosModule`: another
            // output, read from the outputs (`self.nixosModules.x` stays an
            // alias).
            ast::Expr::Select(sel)
                if self_module_ref(sel, &v.scope).is_none()
                    && self.outputs.is_some()
                    && self_output_path(sel, &v.scope).is_some() =>
            {
                let (Some(path), Some(outputs)) = (self_output_path(sel, &v.scope), self.outputs.clone())
                else {
                    return Ok(v);
                };
                let Some((last, parents)) = path.split_last() else { return Ok(v) };
                let view = parents.iter().fold(outputs, |view, name| self.select(&view, name));
                match self.attr_in(&view, last, &short_text(sel.syntax())) {
                    Ok(next) => self.deref(&next),
                    Err(_) => Ok(v),
                }
            }
            ast::Expr::Select(sel)
                if self_output_path(sel, &v.scope).is_none() && sel.default_expr().is_none() =>
            {
                let Some(expr) = sel.expr() else { return Ok(v) };
                let Some(names) =
                    sel.attrpath().and_then(|p| p.attrs().map(|a| attr_name(&a)).collect::<Option<Vec<_>>>())
                else {
                    return Ok(v);
                };
                let base = Val { expr, file: v.file, scope: v.scope.clone() };
                // Another flake's value or a function argument: say so
                // where it is used.
                let readable = match &self.peel(&base).expr {
                    ast::Expr::Ident(i) => {
                        matches!(lookup(&base.scope, &ident_name(i)), Some(Entry::From(_) | Entry::With(_)))
                    }
                    _ => true,
                };
                if !readable {
                    return Ok(v);
                }
                let mut cur = base;
                for name in &names {
                    cur = self.attr_of(&cur, name)?;
                }
                self.deref(&cur)
            }
            _ => Ok(v),
        }
    }

    /// [`Self::deref`] plus `import <path> args…`: the imported file's value,
    /// with each argument consuming one of its lambdas.
    fn whnf(&mut self, val: &Val) -> Result<Val, String> {
        self.enter()?;
        let r = self.whnf_inner(val);
        self.depth -= 1;
        r
    }

    fn whnf_inner(&mut self, val: &Val) -> Result<Val, String> {
        let mut v = self.deref(val)?;
        let mut chain: Vec<FileIx> = vec![v.file];
        loop {
            let ast::Expr::Apply(app) = &v.expr else { return Ok(v) };
            let (head, args) = flatten_apply(app);
            if !is_import_head(&head, &v.scope) {
                return Ok(v);
            }
            let Some(first) = args.first() else { return Ok(v) };
            let target = self.deref(&Val { expr: first.clone(), file: v.file, scope: v.scope.clone() })?;
            let Some(lit) = literal_path(&target.expr) else {
                return Err(format!("imports a computed path (`{}`)", short_text(first.syntax())));
            };
            let imported = self.load_root(target.file, &lit)?;
            let ix = imported.file;
            if chain.contains(&ix) {
                let names: Vec<String> =
                    chain.iter().chain([&ix]).map(|f| self.files.get(*f).rel.display().to_string()).collect();
                return Err(format!("import cycle: {}", names.join(" → ")));
            }
            chain.push(ix);
            v = self.apply_function(&imported, args.len() - 1)?;
            v = self.deref(&v)?;
        }
    }

    /// The value of the file a path literal (written in `from`) names.
    fn load_root(&mut self, from: FileIx, lit: &str) -> Result<Val, String> {
        let abs = self.files.resolve(from, lit);
        let ix = self.files.load(&abs, self.sources).map_err(|e| e.reason())?;
        let loaded = self.files.get(ix);
        if loaded.broken {
            return Err(format!("imports `{}`, which has syntax errors", loaded.rel.display()));
        }
        let Some(root) = loaded.root.clone() else {
            return Err(format!("imports `{}`, which is empty", loaded.rel.display()));
        };
        Ok(Val { expr: root, file: ix, scope: None })
    }

    /// The body of the function `val` after `n` arguments; its parameters
    /// are bound as unknown.
    fn apply_function(&mut self, val: &Val, n: usize) -> Result<Val, String> {
        let mut v = self.peel(val);
        for _ in 0..n {
            v = self.whnf(&v)?;
            let ast::Expr::Lambda(lambda) = &v.expr else {
                return Err(format!(
                    "`{}` is called like a function but is not a lambda",
                    short_text(v.expr.syntax())
                ));
            };
            let Some(body) = lambda.body() else { return Err("the function has no body".to_string()) };
            let names = lambda.param().map(param_names).unwrap_or_default();
            v = Val { expr: body, file: v.file, scope: push_frame(&v.scope, names, false) };
            v = self.peel(&v);
        }
        Ok(v)
    }

    // --- helpers -------------------------------------------------------

    /// Counts one step of the walk; fails when nesting is too deep or the
    /// step budget is spent (`let a = b // b; b = c // c; …` doubles the
    /// work per level).
    fn enter(&mut self) -> Result<(), String> {
        if self.depth >= MAX_DEPTH {
            return Err(format!(
                "nested more than {MAX_DEPTH} levels deep (an import cycle or a recursive binding?)"
            ));
        }
        if self.steps >= MAX_STEPS {
            return Err(format!(
                "the flake needs more than {MAX_STEPS} analysis steps; it is too complex to read statically"
            ));
        }
        self.depth += 1;
        self.steps += 1;
        Ok(())
    }

    fn location(&self, file: FileIx, range: TextRange) -> (PathBuf, usize, usize) {
        let loaded = self.files.get(file);
        let (line, column) = self.sources.line_col(loaded.id, range.start().into());
        (loaded.rel.clone(), line, column)
    }

    fn unresolved(&mut self, what: &str, file: FileIx, range: TextRange, reason: String) {
        let (file, line, column) = self.location(file, range);
        let u = Unresolved { what: what.to_string(), file, line, column, reason };
        if !self.found.unresolved.contains(&u) {
            self.found.unresolved.push(u);
        }
    }
}

/// Single-name bindings of a `let` or `rec` set, and `inherit (src) a;`.
/// `inherit a;` is skipped (it names the outer `a` anyway); `a.b = …;`
/// binds `a` to an unknown value.
fn let_names(node: &impl HasEntry, file: FileIx) -> HashMap<String, Slot> {
    let mut names = HashMap::new();
    for inh in node.inherits() {
        let Some(from) = inh.from().and_then(|f| f.expr()) else { continue };
        for attr in inh.attrs() {
            if let Some(name) = attr_name(&attr) {
                names.insert(name, Slot::From(from.clone(), file));
            }
        }
    }
    for apv in node.attrpath_values() {
        let (Some(path), Some(value)) = (apv.attrpath(), apv.value()) else { continue };
        let keys = keys_of(&path);
        match keys.as_slice() {
            [k] => {
                if let Some(name) = &k.name {
                    names.insert(name.clone(), Slot::Bound(value, file));
                }
            }
            [k, ..] => {
                if let Some(name) = &k.name {
                    names.insert(name.clone(), Slot::Param);
                }
            }
            [] => {}
        }
    }
    names
}

fn key_is(keys: &[Key], i: usize, name: &str) -> bool {
    keys.get(i).and_then(|k| k.name.as_deref()) == Some(name)
}

fn key_of(attr: &ast::Attr) -> Key {
    Key { name: attr_name(attr), range: attr.syntax().text_range(), text: short_text(attr.syntax()) }
}

fn keys_of(path: &ast::Attrpath) -> Vec<Key> {
    path.attrs().map(|a| key_of(&a)).collect()
}

/// Names bound by a lambda's parameter (`x:` or `{ a, b, ... }@x:`).
fn param_names(param: ast::Param) -> HashMap<String, Slot> {
    let mut names = HashMap::new();
    match param {
        ast::Param::IdentParam(p) => {
            if let Some(i) = p.ident() {
                names.insert(ident_name(&i), Slot::Param);
            }
        }
        ast::Param::Pattern(p) => {
            for e in p.pat_entries() {
                if let Some(i) = e.ident() {
                    names.insert(ident_name(&i), Slot::Param);
                }
            }
            if let Some(i) = p.pat_bind().and_then(|b| b.ident()) {
                names.insert(ident_name(&i), Slot::Param);
            }
        }
    }
    names
}

/// `f a b` → (`f`, [`a`, `b`]).
fn flatten_apply(app: &ast::Apply) -> (ast::Expr, Vec<ast::Expr>) {
    let mut args = Vec::new();
    let mut cur = ast::Expr::Apply(app.clone());
    while let ast::Expr::Apply(a) = &cur {
        let (Some(f), Some(x)) = (a.lambda(), a.argument()) else { break };
        args.push(x);
        cur = f;
    }
    while let ast::Expr::Paren(p) = &cur {
        match p.expr() {
            Some(e) => cur = e,
            None => break,
        }
    }
    args.reverse();
    (cur, args)
}

/// The function's name: `f` for `f`, `c` for `a.b.c`.
fn head_name(head: &ast::Expr) -> Option<String> {
    match head {
        ast::Expr::Ident(i) => Some(ident_name(i)),
        ast::Expr::Select(s) => s.attrpath()?.attrs().last().and_then(|a| attr_name(&a)),
        _ => None,
    }
}

/// `import` or `builtins.import`, unless a `let` or a function argument
/// rebinds the name (nixos-hardware's `import = path: path;`).
fn is_import_head(head: &ast::Expr, scope: &Scope) -> bool {
    match head {
        ast::Expr::Ident(i) => {
            ident_name(i) == "import" && matches!(lookup(scope, "import"), None | Some(Entry::With(_)))
        }
        ast::Expr::Select(s) => {
            matches!(s.expr(), Some(ast::Expr::Ident(i)) if ident_name(&i) == "builtins")
                && lookup(scope, "builtins").is_none()
                && s.attrpath().is_some_and(|p| {
                    let names: Vec<_> = p.attrs().map(|a| attr_name(&a)).collect();
                    names == [Some("import".to_string())]
                })
        }
        _ => false,
    }
}

/// `self.a.b`, `inputs.self.a.b` and flake-parts' `config.flake.a.b` →
/// `[a, b]`: a path into the flake's own outputs.
/// `a -> b -> a` for the cycle `names` read from position `from`; long
/// cycles are shortened so the message stays linear in size.
fn cycle_text(names: &[String], from: usize) -> String {
    const SHOWN: usize = 8;
    let k = names.len();
    let ring = (0..=k).map(|j| names[(from + j) % k].as_str());
    if k <= SHOWN {
        return ring.collect::<Vec<_>>().join(" -> ");
    }
    let head: Vec<&str> = ring.take(SHOWN).collect();
    format!("{} -> … -> {}, {k} aliases", head.join(" -> "), names[from])
}

fn self_output_path(sel: &ast::Select, scope: &Scope) -> Option<Vec<String>> {
    if sel.default_expr().is_some() {
        return None;
    }
    let ast::Expr::Ident(root) = sel.expr()? else { return None };
    let root = ident_name(&root);
    let binding = lookup(scope, &root);
    // A `let`-bound `self` is somebody's value, not the flake.
    if matches!(binding, Some(Entry::Bound(_) | Entry::From(_))) {
        return None;
    }
    let names: Vec<String> = sel.attrpath()?.attrs().map(|a| attr_name(&a)).collect::<Option<_>>()?;
    let skip = match (root.as_str(), names.first().map(String::as_str)) {
        ("self", _) => 0,
        (_, Some("self")) if root == "inputs" || matches!(binding, Some(Entry::Param)) => 1,
        ("config", Some("flake")) => 1,
        _ => return None,
    };
    let path = names[skip..].to_vec();
    (!path.is_empty()).then_some(path)
}

/// `self.nixosModules.X`, `inputs.self.nixosModules.X` and flake-parts'
/// `config.flake.nixosModules.X` → `X`.
fn self_module_ref(sel: &ast::Select, scope: &Scope) -> Option<String> {
    match self_output_path(sel, scope)?.as_slice() {
        [modules, x] if modules == "nixosModules" => Some(x.clone()),
        _ => None,
    }
}
