//! Files out of the guest through the shared directory.

use std::path::Path;

use super::{Runner, StepError, StepResult};
use crate::driver::shell::shell_quote;

impl Runner<'_> {
    /// Copies through the shared directory: the guest's `/tmp/shared` is the
    /// host's `<tmp>/shared-xchg` (§4.7).
    pub(super) fn copy_from_vm(
        &mut self,
        source: &str,
        target_dir: Option<&str>,
        out_dir: &Path,
    ) -> StepResult {
        let shared = self.m.shared_dir();
        let io_fail = |r: &Self, what: String, e: std::io::Error| {
            StepError::failed(r.failure(format!("{what}: {e}"), None, None))
        };
        std::fs::create_dir_all(&shared)
            .map_err(|e| io_fail(self, format!("cannot create {}", shared.display()), e))?;
        let tmp = tempfile::Builder::new()
            .prefix("copy-")
            .tempdir_in(&shared)
            .map_err(|e| io_fail(self, format!("cannot create a directory in {}", shared.display()), e))?;
        let rel = tmp.path().file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let base =
            Path::new(source).file_name().map(|n| n.to_string_lossy().into_owned()).ok_or_else(|| {
                StepError::failed(self.failure(format!("`{source}` names no file"), None, None))
            })?;
        let guest_dir = format!("/tmp/shared/{rel}");
        let cmd = format!(
            "mkdir -p {} && cp -r {} {}",
            shell_quote(&guest_dir),
            shell_quote(source),
            shell_quote(&format!("{guest_dir}/{base}"))
        );
        let reply = self.exec(&cmd)?;
        if reply.status != 0 {
            let msg = format!("copying `{source}` out of the VM failed (exit code {})", reply.status);
            return Err(StepError::failed(self.failure(msg, Some(&cmd), Some(&reply))));
        }
        let rel = Path::new(target_dir.unwrap_or(".")).join(&base);
        let target = out_dir.join(&rel);
        let skipped = crate::fsutil::Confined::new(out_dir)
            .copy_tree(&tmp.path().join(&base), &rel)
            .map_err(|e| io_fail(self, format!("cannot copy to {}", target.display()), e))?;
        for s in skipped {
            let shown = s.strip_prefix(tmp.path()).unwrap_or(&s).display().to_string();
            self.log.warning(
                Some(&self.node()),
                &format!("not copied (not a regular file or directory): {shown}"),
            );
        }
        self.log.info(Some(&self.node()), &format!("copied {source} to {}", target.display()));
        Ok(())
    }
}

impl Runner<'_> {
    /// The stock `copy_from_host`: the host file or tree is copied into a
    /// fresh directory of the shared directory, then the guest copies it to
    /// `target` with `cp -r` (after `mkdir -p` of its parent). Only an
    /// absolute source without `..` is read (the generated check passes a
    /// store path).
    pub(super) fn copy_from_host(&mut self, source: &str, target: &str) -> StepResult {
        let fail = |r: &Self, msg: String| StepError::failed(r.failure(msg, None, None));
        let src = Path::new(source);
        if !src.is_absolute() || src.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
            return Err(fail(self, format!("`{source}` is not an absolute host path without `..`")));
        }
        let Some(base) = src.file_name().map(|n| n.to_string_lossy().into_owned()) else {
            return Err(fail(self, format!("`{source}` names no file")));
        };
        let shared = self.m.shared_dir();
        let tmp = std::fs::create_dir_all(&shared)
            .and_then(|()| tempfile::Builder::new().prefix("copy-").tempdir_in(&shared))
            .map_err(|e| fail(self, format!("cannot create a directory in {}: {e}", shared.display())))?;
        let staged = tmp.path().join(&base);
        let copied = copy_host_tree(src, &staged);
        let result = match copied {
            Err(e) => Err(fail(self, format!("cannot copy {source} into the shared directory: {e}"))),
            Ok(()) => {
                let rel =
                    tmp.path().file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                let parent = Path::new(target).parent().map_or("/".into(), |p| p.display().to_string());
                let cmd = format!(
                    "mkdir -p {} && cp -r {} {}",
                    shell_quote(&parent),
                    shell_quote(&format!("/tmp/shared/{rel}/{base}")),
                    shell_quote(target)
                );
                let reply = self.exec(&cmd)?;
                if reply.status == 0 {
                    self.log.info(Some(&self.node()), &format!("copied {source} to {target}"));
                    Ok(())
                } else {
                    let msg =
                        format!("copying {source} to {target} in the VM failed (exit code {})", reply.status);
                    Err(StepError::failed(self.failure(msg, Some(&cmd), Some(&reply))))
                }
            }
        };
        // Store files are read-only: make the copy writable so it can go.
        make_writable(tmp.path());
        result
    }
}

/// Copies a file, or a directory tree following links as Python's
/// `shutil.copytree` does by default, keeping permission bits (a directory's
/// are set once it is filled, as `copystat` does).
fn copy_host_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    let meta = std::fs::metadata(from)?;
    if !meta.is_dir() {
        std::fs::copy(from, to)?;
        return Ok(());
    }
    std::fs::create_dir(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        copy_host_tree(&entry.path(), &to.join(entry.file_name()))?;
    }
    std::fs::set_permissions(to, meta.permissions())
}

/// Adds the owner's write permission to every directory below `dir`.
fn make_writable(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = std::fs::symlink_metadata(dir) else { return };
    if !meta.is_dir() {
        return;
    }
    let mut perms = meta.permissions();
    perms.set_mode(perms.mode() | 0o700);
    let _ = std::fs::set_permissions(dir, perms);
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            make_writable(&entry.path());
        }
    }
}
