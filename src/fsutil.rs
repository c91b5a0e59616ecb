//! Atomic file writes (nothing is ever half-written) and the lexical path
//! normalisation the flake analysis and the CLI compare paths with.

use std::io::Write;
use std::path::{Component, Path, PathBuf};

/// Lexical normalisation: drops `.` and folds `..` into a preceding name
/// (Nix does the same with path literals, without following symlinks); a
/// `..` with no name before it stays (`../x`, `/..`).
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir if matches!(out.components().next_back(), Some(Component::Normal(_))) => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out
}

/// Writes `contents` to `path` through a temporary file in the same
/// directory followed by a rename, so readers see the old or the new file,
/// never a torn one. Parent directories are created.
///
/// The file gets the mode of the file it replaces, or that of a file made
/// by `open(2)` (0o666 less the umask), not the 0o600 of a temporary file:
/// a rewritten `flake.nix` must stay readable by others.
///
/// A symbolic link is written through: its target is replaced and the link
/// stays (a `flake.nix` linked from a dotfiles checkout stays linked).
pub fn write_atomic(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let target;
    let path = if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
        // A dangling link has no target to replace: fail rather than guess.
        target = std::fs::canonicalize(path)?;
        target.as_path()
    } else {
        path
    };
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir)?;
    let old_perms = std::fs::metadata(path).ok().filter(|m| m.is_file()).map(|m| m.permissions());
    let fresh = std::fs::Permissions::from_mode(0o666);
    let mut tmp = tempfile::Builder::new().permissions(fresh).tempfile_in(dir)?;
    if let Some(perms) = old_perms {
        tmp.as_file().set_permissions(perms)?;
    }
    tmp.write_all(contents)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_lexically() {
        assert_eq!(normalize(Path::new("./a/../b/./c.nix")), PathBuf::from("b/c.nix"));
        assert_eq!(normalize(Path::new("../x")), PathBuf::from("../x"));
        assert_eq!(normalize(Path::new("../..")), PathBuf::from("../.."));
        assert_eq!(normalize(Path::new("/a/./b/../c.nix")), PathBuf::from("/a/c.nix"));
        assert_eq!(normalize(Path::new("/a/b/../../..")), PathBuf::from("/.."));
    }

    #[test]
    fn replaces_a_file_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub/f.nix");
        write_atomic(&path, b"one").expect("first write");
        write_atomic(&path, b"two").expect("second write");
        assert_eq!(std::fs::read(&path).expect("read"), b"two");
        assert_eq!(std::fs::read_dir(dir.path().join("sub")).expect("list").count(), 1);
    }

    #[test]
    fn writes_through_a_symlink() {
        let dir = tempfile::tempdir().expect("tempdir");
        let real = dir.path().join("real.nix");
        let link = dir.path().join("flake.nix");
        std::fs::write(&real, "old").expect("write");
        std::os::unix::fs::symlink("real.nix", &link).expect("symlink");
        write_atomic(&link, b"new").expect("write through the link");
        assert!(
            std::fs::symlink_metadata(&link).expect("stat").file_type().is_symlink(),
            "the link was replaced"
        );
        assert_eq!(std::fs::read(&real).expect("read"), b"new");
    }
}
