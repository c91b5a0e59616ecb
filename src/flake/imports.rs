//! The files of one analysis: `flake.nix` and everything it imports, read
//! once, parsed once and named relative to the flake root.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::fsutil::{normalize, relative_to};

use rnix::ast;
use rowan::ast::AstNode;

use crate::diagnostic::{Diagnostic, FileId, Sources};
use crate::flake::{dupes, parse};

/// Index of a file in [`Files`].
pub(crate) type FileIx = usize;

/// One parsed file.
pub(crate) struct Loaded {
    pub id: FileId,
    /// Path relative to the flake root (may start with `..`).
    pub rel: PathBuf,
    /// Directory of the file (absolute), against which its paths resolve.
    pub dir: PathBuf,
    pub root: Option<ast::Expr>,
    /// The file has syntax errors: what is read from it is not trusted.
    pub broken: bool,
}

/// Why a file could not be loaded (becomes an `Unresolved` reason).
#[derive(Debug)]
pub(crate) enum LoadError {
    Missing(PathBuf),
    Io(PathBuf, std::io::Error),
}

impl LoadError {
    pub fn reason(&self) -> String {
        match self {
            LoadError::Missing(p) => format!("imports `{}`, which does not exist", p.display()),
            LoadError::Io(p, e) => format!("imports `{}`, which cannot be read: {e}", p.display()),
        }
    }
}

pub(crate) struct Files {
    /// The flake root, absolute and normalized.
    pub root: PathBuf,
    pub files: Vec<Loaded>,
    by_path: HashMap<PathBuf, FileIx>,
    pub diagnostics: Vec<Diagnostic>,
}

impl Files {
    pub fn new(dir: &Path) -> Self {
        let abs = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
        Files { root: normalize(&abs), files: Vec::new(), by_path: HashMap::new(), diagnostics: Vec::new() }
    }

    pub fn get(&self, ix: FileIx) -> &Loaded {
        &self.files[ix]
    }

    /// Resolves a path literal written in file `from` (absolute, normalized).
    pub fn resolve(&self, from: FileIx, literal: &str) -> PathBuf {
        let p = Path::new(literal);
        if p.is_absolute() { normalize(p) } else { normalize(&self.files[from].dir.join(p)) }
    }

    /// `abs` relative to the flake root.
    pub fn rel(&self, abs: &Path) -> PathBuf {
        relative_to(abs, &self.root)
    }

    /// The file a module path means: a directory stands for its `default.nix`.
    pub fn module_file(abs: &Path) -> PathBuf {
        if abs.is_dir() { abs.join("default.nix") } else { abs.to_path_buf() }
    }

    /// Reads and parses a file once (by absolute path; a directory means its
    /// `default.nix`), adding it to `sources` and its syntax errors to
    /// [`Files::diagnostics`].
    pub fn load(&mut self, abs: &Path, sources: &mut Sources) -> Result<FileIx, LoadError> {
        let path = Self::module_file(abs);
        if let Some(&ix) = self.by_path.get(&path) {
            return Ok(ix);
        }
        let text = match crate::limits::read_nix_file(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(LoadError::Missing(self.rel(&path)));
            }
            Err(e) => return Err(LoadError::Io(self.rel(&path), e)),
        };
        Ok(self.add(path, text, sources))
    }

    /// Adds already-read text (used for `flake.nix`, whose read errors are fatal).
    pub fn add(&mut self, path: PathBuf, text: String, sources: &mut Sources) -> FileIx {
        let rel = self.rel(&path);
        let id = sources.add(rel.clone(), text);
        let (root, mut diags) = parse::parse(id, sources.text(id));
        let broken = !diags.is_empty();
        // rnix's error recovery cascades: the first error is the one to fix.
        diags.truncate(1);
        if let (false, Some(root)) = (broken, &root) {
            diags.extend(dupes::check(id, root.syntax()));
        }
        self.diagnostics.extend(diags);
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_else(|| self.root.clone());
        self.files.push(Loaded { id, rel, dir, root, broken });
        let ix = self.files.len() - 1;
        self.by_path.insert(path, ix);
        ix
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths() {
        assert_eq!(relative_to(Path::new("/r/x/a.nix"), Path::new("/r")), PathBuf::from("x/a.nix"));
        assert_eq!(relative_to(Path::new("/q/a.nix"), Path::new("/r/s")), PathBuf::from("../../q/a.nix"));
    }
}
