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
