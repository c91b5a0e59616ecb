//! What the guest's display shows.

use std::path::Path;

use super::{Runner, StepError, StepResult};

impl Runner<'_> {
    pub(super) fn screenshot(&mut self, name: &str, out_dir: &Path) -> StepResult {
        let file = if name.contains('.') { name.to_owned() } else { format!("{name}.png") };
        let target = out_dir.join(&file);
        // Defence in depth: `generate` refuses such names already.
        let out = crate::fsutil::Confined::new(out_dir);
        if let Err(e) = out.prepare(Path::new(&file)) {
            let msg = format!("cannot write {}: {e}", target.display());
            return Err(StepError::failed(self.failure(msg, None, None)));
        }
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
            Ok(png) if png.status.success() => out
                .write(Path::new(&file), &png.stdout)
                .map(drop)
                .map_err(|e| fail(self, format!("cannot write {}: {e}", target.display()))),
            Ok(png) => Err(fail(
                self,
                format!(
                    "Cannot convert screenshot (pnmtopng exited with {}): {}",
                    png.status,
                    String::from_utf8_lossy(&png.stderr).trim()
                ),
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let kept = target.with_extension("ppm");
                let rel = Path::new(&file).with_extension("ppm");
                std::fs::read(&ppm)
                    .and_then(|bytes| out.write(&rel, &bytes))
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
