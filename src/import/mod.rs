//! `nixvm-gen import`: turns hand-written NixOS tests (`runNixOSTest`,
//! `nixosTest`, `makeTest`, `runTest` arguments, nixpkgs
//! `make-test-python.nix` files) into test descriptions.
//!
//! [`nix`] finds the tests and copies their nodes as source; [`python`]
//! parses the testScript (rustpython-parser, see docs/import.md for why)
//! and maps statements to steps through one table; [`emit`] writes the
//! description. What cannot be converted stays in the description as a
//! commented TODO with the original lines and is reported as a
//! [`Leftover`]; a conversion with no leftovers is checked by running the
//! original and the generated testScript against a recording fake Machine
//! (`benches/import/fake_machine.py`).

pub mod emit;
pub mod nix;
pub mod python;

use std::path::{Path, PathBuf};

use serde::Serialize;

pub use python::{Leftover, Note};

use crate::diagnostic::{Diagnostic, Sources};

/// The largest file `import` reads.
pub const MAX_FILE_BYTES: usize = 4 << 20;
/// The deepest bracket nesting of a Nix file `import` reads.
const MAX_NIX_NESTING: usize = 100;

/// A file that is not a NixOS test `import` can read.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{file}:{line}:{column}: not valid Nix: {message}")]
    NixSyntax { file: PathBuf, line: usize, column: usize, message: String },
    #[error("{file}: no test found (no attribute set with a `testScript`)")]
    NoTest { file: PathBuf },
    #[error("{file}: {message}")]
    TooLarge { file: PathBuf, message: String },
}

/// One imported test.
#[derive(Debug, Serialize)]
pub struct Imported {
    /// The file the test was read from.
    pub source: PathBuf,
    /// 1-based line of the test in it.
    pub line: usize,
    pub name: String,
    /// File name of the description (`<name>.nix`).
    pub file_name: String,
    /// The description's Nix text.
    pub description: String,
    pub nodes: Vec<String>,
    /// Steps written (subtests and their steps counted).
    pub steps: usize,
    pub leftovers: Vec<Leftover>,
    pub notes: Vec<Note>,
    /// The testScript as Nix decodes it (interpolations as placeholders).
    pub original_script: Option<String>,
    /// The Python testScript nixvm-gen generates from the description, when
    /// the description is valid.
    pub generated_script: Option<String>,
    /// Problems the description itself has (from nixvm-gen's own parser
    /// and validator); non-empty means the description needs editing.
    pub description_errors: Vec<String>,
}

impl Imported {
    /// Leftovers are all kept as `python` steps and the description is
    /// valid: it runs, with the stock driver.
    pub fn is_runnable(&self) -> bool {
        self.leftovers.iter().all(|l| l.python)
            && self.description_errors.is_empty()
            && self.generated_script.is_some()
    }

    /// Converted with nothing left over and a valid description.
    pub fn is_full(&self) -> bool {
        self.leftovers.is_empty() && self.description_errors.is_empty() && self.generated_script.is_some()
    }
}

/// Where descriptions go, for rewriting relative paths of copied nodes.
#[derive(Clone, Debug)]
pub struct Target {
    /// Absolute directory the description will be written to.
    pub out_dir: PathBuf,
    /// Keep what cannot be converted as `python` steps (the description
    /// then has `backend = "python"`) instead of commented TODOs.
    pub python_steps: bool,
}

/// Imports every test of one file.
pub fn import_file(path: &Path, text: &str, target: &Target) -> Result<Vec<Imported>, ImportError> {
    if text.len() > MAX_FILE_BYTES {
        return Err(ImportError::TooLarge {
            file: path.into(),
            message: format!("larger than {MAX_FILE_BYTES} bytes"),
        });
    }
    if let Some(offset) = nix_too_deep(text) {
        let line = nix::line_of(text, offset);
        return Err(ImportError::TooLarge {
            file: path.into(),
            message: format!("line {line}: brackets nested more than {MAX_NIX_NESTING} levels deep"),
        });
    }
    // What rnix's tokenizer would take minutes on, or nests past what the
    // walks below may recurse: refused before rnix sees it.
    if let Err(refused) = crate::limits::check_nesting(text) {
        let line = nix::line_of(text, refused.range().0);
        return Err(ImportError::TooLarge {
            file: path.into(),
            message: format!("line {line}: {}", refused.message()),
        });
    }
    // rnix and the walks recurse on the tree: run on a big stack.
    let job = || import_here(path, text, target);
    std::thread::scope(|scope| {
        match std::thread::Builder::new().name("import".into()).stack_size(64 << 20).spawn_scoped(scope, job)
        {
            Ok(handle) => handle.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            Err(_) => job(),
        }
    })
}

fn import_here(path: &Path, text: &str, target: &Target) -> Result<Vec<Imported>, ImportError> {
    let parsed = rnix::Root::parse(text);
    if let Some(err) = parsed.errors().first() {
        let offset = match err {
            rnix::ParseError::Unexpected(r)
            | rnix::ParseError::UnexpectedExtra(r)
            | rnix::ParseError::UnexpectedWanted(_, r, _)
            | rnix::ParseError::UnexpectedDoubleBind(r)
            | rnix::ParseError::DuplicatedArgs(r, _) => usize::from(r.start()),
            _ => text.len(),
        };
        let line = nix::line_of(text, offset);
        let line_start = text[..offset.min(text.len())].rfind('\n').map_or(0, |i| i + 1);
        return Err(ImportError::NixSyntax {
            file: path.into(),
            line,
            column: text[line_start..offset.min(text.len())].chars().count() + 1,
            message: err.to_string(),
        });
    }
    let tests = nix::find_tests(&parsed.syntax(), text);
    if tests.is_empty() {
        return Err(ImportError::NoTest { file: path.into() });
    }
    let stem = path.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_else(|| "test".into());
    let stem = if stem == "default" {
        path.parent().and_then(|p| p.file_name()).map(|s| s.to_string_lossy().to_string()).unwrap_or(stem)
    } else {
        stem
    };
    let several = tests.len() > 1;
    let src_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let src_dir = std::path::absolute(&src_dir).unwrap_or(src_dir);
    let mut out = Vec::new();
    for test in tests {
        let name = emit::test_name(&test, &stem, several);
        out.push(emit::build(path, &src_dir, test, name, target));
    }
    Ok(out)
}

/// The offset where bracket nesting first exceeds [`MAX_NIX_NESTING`].
fn nix_too_deep(text: &str) -> Option<usize> {
    let mut depth = 0usize;
    for (i, c) in text.char_indices() {
        match c {
            '(' | '[' | '{' => {
                depth += 1;
                if depth > MAX_NIX_NESTING {
                    return Some(i);
                }
            }
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

/// Parses and validates a description text with nixvm-gen's own parser,
/// and renders its Python testScript: the self-check every import ends with.
///
/// Values Nix computes (`"${pkgs.hello}/bin/hello"`) are placeholders in the
/// rendered script; for the call-log comparison each is replaced by what
/// `symbolic` gives for its expression (`(builtins.elemAt description.steps
/// 3).succeed`): the step's string with the interpolations written as the
/// original script's placeholders, so both scripts see the same symbolic
/// value. A computed value `symbolic` cannot follow leaves the script out
/// (`None`) with a reason.
pub fn check_description(
    file_name: &str,
    text: &str,
    symbolic: &dyn Fn(&str) -> Option<String>,
) -> (Option<String>, Vec<String>) {
    let mut sources = Sources::default();
    let rel = PathBuf::from(crate::spec::DEFAULT_TESTS_DIR).join(file_name);
    let file = sources.add(rel.clone(), text.to_string());
    let (spec, mut diags) = crate::spec::parse::parse(file, &rel, text);
    let Some(spec) = spec else {
        return (None, render_diags(&diags, &sources));
    };
    let modules: Vec<String> = spec.modules.iter().flatten().map(|(m, _)| m.clone()).collect();
    let mut tests = vec![spec];
    diags.extend(crate::spec::validate::validate(&mut tests, &modules));
    if crate::diagnostic::has_errors(&diags) {
        return (None, render_diags(&diags, &sources));
    }
    let mut script = match crate::codegen::script::render(&tests[0], &sources) {
        Ok(script) => script,
        Err(err) => return (None, vec![err.to_string()]),
    };
    for (i, computed) in tests[0].computed.iter().enumerate() {
        let Some(symbolic) = symbolic(&computed.expr) else {
            return (
                None,
                vec![format!("a computed value the call-log comparison cannot follow: {}", computed.expr)],
            );
        };
        // The placeholder sits inside a Python string literal: put the
        // symbolic text there, escaped as that literal escapes.
        let quoted = crate::codegen::escape::python_string(&symbolic);
        script = script.replace(&crate::spec::computed::placeholder(i), &quoted[1..quoted.len() - 1]);
    }
    (Some(script), Vec::new())
}

fn render_diags(diags: &[Diagnostic], sources: &Sources) -> Vec<String> {
    diags
        .iter()
        .filter(|d| d.is_error())
        .map(|d| {
            let at =
                d.span.map(|s| format!("line {}: ", sources.line_col(s.file, s.start).0)).unwrap_or_default();
            format!("{at}[{}] {}", d.code, d.message)
        })
        .collect()
}
