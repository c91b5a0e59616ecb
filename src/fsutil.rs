//! Atomic file writes (nothing is ever half-written), writes confined to a
//! directory (nothing a description or a guest controls lands outside it),
//! and the lexical path normalisation the flake analysis and the CLI compare
//! paths with.

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

/// `path` relative to `base` (both absolute and normalized), with `..` where
/// `path` lies outside `base`.
pub fn relative_to(path: &Path, base: &Path) -> PathBuf {
    if let Ok(rest) = path.strip_prefix(base) {
        return rest.to_path_buf();
    }
    let p: Vec<_> = path.components().collect();
    let b: Vec<_> = base.components().collect();
    let common = p.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let mut out = PathBuf::new();
    for _ in common..b.len() {
        out.push("..");
    }
    for c in &p[common..] {
        out.push(c.as_os_str());
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
    let mut tmp = tempfile::Builder::new().prefix(TEMP_PREFIX).permissions(fresh).tempfile_in(dir)?;
    if let Some(perms) = old_perms {
        tmp.as_file().set_permissions(perms)?;
    }
    tmp.write_all(contents)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Why a relative path may not be written under a confining directory.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unconfined {
    #[error("the path is empty")]
    Empty,
    #[error("`{0}` is an absolute path; only paths relative to the output directory are allowed")]
    Absolute(String),
    #[error("`{0}` contains `..`; only paths inside the output directory are allowed")]
    ParentDir(String),
    #[error("`{0}` begins with `-`, which commands would read as an option")]
    OptionLike(String),
    #[error("`{0}` contains a NUL or another control character")]
    Control(String),
}

/// Checks that `rel` names something inside a directory, lexically: not
/// absolute, no `..`, not empty, no control characters, and no component
/// starting with `-`. `.` components are harmless and allowed.
/// The static check of `generate` and the driver's run-time check share it.
pub fn check_relative(rel: &str) -> Result<(), Unconfined> {
    let shown = || rel.escape_debug().to_string();
    if rel.chars().any(char::is_control) {
        return Err(Unconfined::Control(shown()));
    }
    let p = Path::new(rel);
    if p.has_root() {
        return Err(Unconfined::Absolute(shown()));
    }
    let mut names = 0;
    for c in p.components() {
        match c {
            Component::Normal(n) => {
                if n.as_encoded_bytes().first() == Some(&b'-') {
                    return Err(Unconfined::OptionLike(shown()));
                }
                names += 1;
            }
            Component::CurDir => {}
            Component::ParentDir => return Err(Unconfined::ParentDir(shown())),
            Component::RootDir | Component::Prefix(_) => return Err(Unconfined::Absolute(shown())),
        }
    }
    if names == 0 { Err(Unconfined::Empty) } else { Ok(()) }
}

/// A directory that writes are confined to (the driver's output directory,
/// a flake). Paths are checked lexically ([`check_relative`]) and every
/// existing component is looked at without following symbolic links, so
/// neither `..`, an absolute path, nor a planted link leads outside.
///
/// The threat is a hostile description or guest, not a concurrent local
/// user racing the checks: that user could write to the directory anyway.
#[derive(Debug, Clone)]
pub struct Confined {
    root: PathBuf,
}

impl Confined {
    /// `root` must exist; it is used as given (it may itself be a link, the
    /// user's choice).
    pub fn new(root: &Path) -> Confined {
        Confined { root: root.to_path_buf() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `root/rel`, after the lexical check and with every existing component
    /// of `rel` a real directory (the last one may be missing, a file or a
    /// directory, but not a symbolic link). Missing directories are created.
    pub fn prepare(&self, rel: &Path) -> std::io::Result<PathBuf> {
        let text = rel.to_string_lossy();
        check_relative(&text).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let names: Vec<_> =
            rel.components().filter(|c| matches!(c, Component::Normal(_))).map(|c| c.as_os_str()).collect();
        let mut at = self.root.clone();
        for (i, name) in names.iter().enumerate() {
            at.push(name);
            let last = i + 1 == names.len();
            match std::fs::symlink_metadata(&at) {
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidInput,
                        format!("{} is a symbolic link; refusing to write through it", at.display()),
                    ));
                }
                Ok(m) if !last && !m.is_dir() => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidInput,
                        format!("{} is not a directory", at.display()),
                    ));
                }
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && !last => std::fs::create_dir(&at)?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(at)
    }

    /// Writes a file atomically at `root/rel` (see [`Confined::prepare`]).
    /// The rename replaces whatever is there, so even a link planted after
    /// the check is replaced, not written through.
    pub fn write(&self, rel: &Path, contents: &[u8]) -> std::io::Result<PathBuf> {
        let path = self.prepare(rel)?;
        if std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{} is a directory", path.display()),
            ));
        }
        replace_atomic(&path, contents)?;
        Ok(path)
    }

    /// Copies the tree at `from` (outside the confinement, e.g. what a guest
    /// left in the shared directory) to `root/rel`. Symbolic links in the
    /// source are neither followed nor copied (a guest could point them at
    /// host files); they are returned so the caller can say so.
    pub fn copy_tree(&self, from: &Path, rel: &Path) -> std::io::Result<Vec<PathBuf>> {
        let to = self.prepare(rel)?;
        let mut skipped = Vec::new();
        copy_tree_nofollow(from, &to, &mut skipped)?;
        Ok(skipped)
    }
}

fn copy_tree_nofollow(from: &Path, to: &Path, skipped: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let meta = std::fs::symlink_metadata(from)?;
    let existing = std::fs::symlink_metadata(to).ok();
    if existing.as_ref().is_some_and(|m| m.file_type().is_symlink()) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{} is a symbolic link; refusing to write through it", to.display()),
        ));
    }
    if meta.is_dir() {
        if existing.is_none() {
            std::fs::create_dir(to)?;
        }
        for entry in std::fs::read_dir(from)? {
            let entry = entry?;
            copy_tree_nofollow(&entry.path(), &to.join(entry.file_name()), skipped)?;
        }
        Ok(())
    } else if meta.is_file() {
        let mut src = std::fs::File::open(from)?;
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut src, &mut buf)?;
        replace_atomic(to, &buf)
    } else {
        skipped.push(from.to_path_buf());
        Ok(())
    }
}

/// [`write_atomic`] without following a link at `path`: the rename replaces
/// the link (reports in the output directory are never written through one).
pub fn replace_atomic(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .permissions(std::fs::Permissions::from_mode(0o666))
        .tempfile_in(dir)?;
    tmp.write_all(contents)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Whether the file at `path` holds exactly `bytes` (false when it does
/// not exist), read in small pieces: the generated file can be tens of
/// megabytes, and `check` usually finds it up to date.
pub fn same_contents(path: &Path, bytes: &[u8]) -> std::io::Result<bool> {
    let mut file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    if file.metadata()?.len() != bytes.len() as u64 {
        return Ok(false);
    }
    reads_exactly(&mut file, bytes)
}

/// Whether `reader` yields exactly `bytes` up to its end, compared piece
/// by piece so that a large file is never held in memory twice.
pub fn reads_exactly(reader: &mut impl std::io::Read, bytes: &[u8]) -> std::io::Result<bool> {
    let mut buf = vec![0u8; (64 << 10).min(bytes.len() + 1)];
    let mut rest = bytes;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if n == 0 {
            return Ok(rest.is_empty());
        }
        if n > rest.len() || buf[..n] != rest[..n] {
            return Ok(false);
        }
        rest = &rest[n..];
    }
}

/// Prefix of every temporary file this crate makes next to a file it
/// replaces: generated projects' `.gitignore` lists `.nixvm-tmp*`, and the
/// next run removes leftovers of a killed one ([`remove_stale_temporaries`]).
pub const TEMP_PREFIX: &str = ".nixvm-tmp";

/// Removes temporary files a killed run left in `dir` (older than a minute,
/// so a concurrent run's file is left alone). Errors are ignored: this is
/// housekeeping.
pub fn remove_stale_temporaries(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let now = std::time::SystemTime::now();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let stale =
            entry.metadata().ok().and_then(|m| m.modified().ok()).is_some_and(|t| {
                now.duration_since(t).is_ok_and(|age| age > std::time::Duration::from_secs(60))
            });
        let ours =
            name.to_string_lossy().starts_with(TEMP_PREFIX) || name.to_string_lossy().starts_with(".tmp");
        if ours && stale && entry.file_type().is_ok_and(|t| t.is_file()) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Refuses to write `path` when it, or a directory on the way to it below
/// `root`, is a symbolic link that resolves outside `root` (a `nix/`
/// directory or `checks.generated.nix` linked out of the flake). Links that
/// stay inside `root` are fine.
pub fn check_stays_inside(root: &Path, path: &Path) -> std::io::Result<()> {
    let root_real = match std::fs::canonicalize(root) {
        Ok(r) => r,
        // Nothing below a missing root exists yet, so no link can lead out.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    // The deepest existing ancestor (or the path itself) decides.
    let mut probe = path.to_path_buf();
    loop {
        if std::fs::symlink_metadata(&probe).is_ok() {
            break;
        }
        if !probe.pop() {
            return Ok(());
        }
    }
    let real = std::fs::canonicalize(&probe).map_err(|e| {
        // A dangling link: where it points is unknown, refuse.
        if std::fs::symlink_metadata(&probe).is_ok_and(|m| m.file_type().is_symlink()) {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{} is a dangling symbolic link; refusing to write through it", probe.display()),
            )
        } else {
            e
        }
    })?;
    if real.starts_with(&root_real) {
        Ok(())
    } else {
        Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "{} leads to {}, outside {}; refusing to write there (remove the symbolic link)",
                probe.display(),
                real.display(),
                root_real.display()
            ),
        ))
    }
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

#[cfg(test)]
mod confinement_tests {
    use super::*;

    #[test]
    fn relative_paths_are_checked_lexically() {
        assert!(check_relative("logs/a").is_ok());
        assert!(check_relative("./a").is_ok());
        assert_eq!(check_relative(""), Err(Unconfined::Empty));
        assert_eq!(check_relative("."), Err(Unconfined::Empty));
        assert!(matches!(check_relative("/etc/x"), Err(Unconfined::Absolute(_))));
        assert!(matches!(check_relative("../victim"), Err(Unconfined::ParentDir(_))));
        assert!(matches!(check_relative("a/../../b"), Err(Unconfined::ParentDir(_))));
        assert!(matches!(check_relative("-rf"), Err(Unconfined::OptionLike(_))));
        assert!(matches!(check_relative("a\0b"), Err(Unconfined::Control(_))));
    }

    #[test]
    fn confined_writes_refuse_escapes_and_links() {
        let top = tempfile::tempdir().expect("tempdir");
        let out = top.path().join("out");
        let victim = top.path().join("victim");
        std::fs::create_dir_all(&out).expect("mkdir");
        std::fs::create_dir_all(&victim).expect("mkdir");
        std::fs::write(victim.join("f"), "keep").expect("write");
        let c = Confined::new(&out);
        assert!(c.write(Path::new("../victim/f"), b"x").is_err());
        assert!(c.write(&victim.join("f"), b"x").is_err());
        std::os::unix::fs::symlink(&victim, out.join("link")).expect("symlink");
        assert!(c.write(Path::new("link/f"), b"x").is_err(), "wrote through a linked directory");
        std::os::unix::fs::symlink(victim.join("f"), out.join("f")).expect("symlink");
        assert!(c.write(Path::new("f"), b"x").is_err(), "wrote through a linked file");
        assert_eq!(std::fs::read(victim.join("f")).expect("read"), b"keep");
        let written = c.write(Path::new("sub/dir/g"), b"ok").expect("inside");
        assert_eq!(std::fs::read(written).expect("read"), b"ok");
    }

    #[test]
    fn copied_trees_skip_links_from_the_source() {
        let top = tempfile::tempdir().expect("tempdir");
        let src = top.path().join("src");
        std::fs::create_dir_all(src.join("d")).expect("mkdir");
        std::fs::write(src.join("d/a"), "a").expect("write");
        std::os::unix::fs::symlink("/etc/passwd", src.join("d/pw")).expect("symlink");
        let out = top.path().join("out");
        std::fs::create_dir_all(&out).expect("mkdir");
        let skipped = Confined::new(&out).copy_tree(&src, Path::new("copied/src")).expect("copy");
        assert_eq!(skipped, vec![src.join("d/pw")]);
        assert_eq!(std::fs::read(out.join("copied/src/d/a")).expect("read"), b"a");
        assert!(std::fs::symlink_metadata(out.join("copied/src/d/pw")).is_err());
    }

    #[test]
    fn writes_through_links_that_leave_the_root_are_refused() {
        let top = tempfile::tempdir().expect("tempdir");
        let flake = top.path().join("flake");
        let elsewhere = top.path().join("elsewhere");
        std::fs::create_dir_all(flake.join("inside")).expect("mkdir");
        std::fs::create_dir_all(&elsewhere).expect("mkdir");
        std::os::unix::fs::symlink(&elsewhere, flake.join("nix")).expect("symlink");
        let err = check_stays_inside(&flake, &flake.join("nix/checks.generated.nix")).expect_err("escapes");
        assert!(err.to_string().contains("outside"), "{err}");
        std::os::unix::fs::symlink(elsewhere.join("f.nix"), flake.join("g.nix")).expect("symlink");
        assert!(check_stays_inside(&flake, &flake.join("g.nix")).is_err(), "dangling link out of the flake");
        std::os::unix::fs::symlink("inside", flake.join("ok")).expect("symlink");
        check_stays_inside(&flake, &flake.join("ok/x.nix")).expect("a link inside the flake is fine");
        check_stays_inside(&flake, &flake.join("new/dir/x.nix")).expect("missing directories are fine");
    }

    #[test]
    fn stale_temporaries_are_removed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let stale = dir.path().join(format!("{TEMP_PREFIX}abc"));
        let fresh = dir.path().join(format!("{TEMP_PREFIX}def"));
        let other = dir.path().join("keep.nix");
        for p in [&stale, &fresh, &other] {
            std::fs::write(p, "x").expect("write");
        }
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        std::fs::File::options().write(true).open(&stale).expect("open").set_modified(old).expect("mtime");
        std::fs::File::options().write(true).open(&other).expect("open").set_modified(old).expect("mtime");
        remove_stale_temporaries(dir.path());
        assert!(!stale.exists() && fresh.exists() && other.exists());
    }
}
