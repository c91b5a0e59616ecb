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
        // unannounced in the live log. pnmtopng comes from the driver's PATH
        // (src/driver/tools.rs); without it the raw screendump is kept.
        let mut convert = match crate::driver::tools::command(crate::driver::tools::PNMTOPNG) {
            Ok(cmd) => cmd,
            Err(missing) => {
                let kept = target.with_extension("ppm");
                let rel = Path::new(&file).with_extension("ppm");
                std::fs::read(&ppm)
                    .and_then(|bytes| out.write(&rel, &bytes))
                    .map(drop)
                    .map_err(|e| fail(self, format!("cannot write {}: {e}", kept.display())))?;
                self.log.warning(
                    Some(&self.node()),
                    &format!("{missing}; kept the raw screendump as {}", kept.display()),
                );
                return Ok(());
            }
        };
        match convert.arg(&ppm).output() {
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
            Err(e) => Err(fail(self, format!("cannot run pnmtopng: {e}"))),
        }
    }
}
