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
        let target = out_dir.join(target_dir.unwrap_or("")).join(&base);
        copy_tree(&tmp.path().join(&base), &target)
            .map_err(|e| io_fail(self, format!("cannot copy to {}", target.display()), e))?;
        self.log.info(Some(&self.node()), &format!("copied {source} to {}", target.display()));
        Ok(())
    }
}

pub(super) fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent)?;
    }
    if from.is_dir() {
        std::fs::create_dir_all(to)?;
        for entry in std::fs::read_dir(from)? {
            let entry = entry?;
            copy_tree(&entry.path(), &to.join(entry.file_name()))?;
        }
        Ok(())
    } else {
        std::fs::copy(from, to).map(drop)
    }
}
