//! What the guest's display shows.

use std::path::Path;

use super::{Runner, StepError, StepResult};

impl Runner<'_> {
    pub(super) fn screenshot(&mut self, name: &str, out_dir: &Path) -> StepResult {
        let file = if name.contains('.') { name.to_owned() } else { format!("{name}.png") };
        let target = out_dir.join(&file);
        let ppm = self.m.state_dir().join("screenshot.ppm");
        let _ = std::fs::remove_file(&ppm);
        let said = self.monitor(&format!("screendump {}", ppm.display()))?;
        let fail = |r: &Self, msg: String| StepError::failed(r.failure(msg, None, None));
        if !ppm.exists() {
            let why = if said.is_empty() { "no reason given".to_owned() } else { said };
            return Err(fail(self, format!("QEMU did not write a screendump ({why})")));
        }
        // stderr is captured (not inherited): it belongs in the failure, not
        // unannounced in the live log.
        let converted = std::process::Command::new("pnmtopng").arg(&ppm).output();
        match converted {
            Ok(out) if out.status.success() => crate::fsutil::write_atomic(&target, &out.stdout)
                .map_err(|e| fail(self, format!("cannot write {}: {e}", target.display()))),
            Ok(out) => Err(fail(
                self,
                format!(
                    "Cannot convert screenshot (pnmtopng exited with {}): {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let kept = target.with_extension("ppm");
                std::fs::copy(&ppm, &kept)
                    .map(drop)
                    .map_err(|e| fail(self, format!("cannot write {}: {e}", kept.display())))?;
                self.log.warning(
                    Some(&self.node()),
                    &format!("pnmtopng is missing; kept the raw screendump as {}", kept.display()),
                );
                Ok(())
            }
            Err(e) => Err(fail(self, format!("cannot run pnmtopng: {e}"))),
        }
    }
}
