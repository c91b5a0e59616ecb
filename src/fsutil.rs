//! Atomic file writes: nothing is ever half-written.

use std::io::Write;
use std::path::Path;

/// Writes `contents` to `path` through a temporary file in the same
/// directory followed by a rename, so readers see the old or the new file,
/// never a torn one. Parent directories are created.
///
/// The file gets the mode of the file it replaces, or that of a file made
/// by `open(2)` (0o666 less the umask), not the 0o600 of a temporary file:
/// a rewritten `flake.nix` must stay readable by others.
pub fn write_atomic(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
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
