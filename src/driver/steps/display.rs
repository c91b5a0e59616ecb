//! What the guest's display shows: screenshots, and its text read by OCR
//! (`waitForText`, as the stock driver's `wait_for_text` with `enableOCR`:
//! NixOS/nixpkgs nixos/lib/test-driver/src/test_driver/machine/ocr.py at
//! 19f415db4e87e0e1a7b2e3fc606f7b7c66d92d8d).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use super::{Runner, StepError, StepResult};
use crate::driver::tools;

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
        let ppm = self.screendump()?;
        let fail = |r: &Self, msg: String| StepError::failed(r.failure(msg, None, None));
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

/// The stock OCR call (`_run_tesseract`): legacy and LSTM engines combined
/// (`--oem 2`), sparse text (`--psm 11`), text to stdout.
const TESSERACT_ARGS: &[&str] = &["-", "--oem", "2", "-c", "debug_file=/dev/null", "--psm", "11"];

/// Bound of one OCR run beyond the step's deadline: a slow last run still
/// gets to finish, a hung one is killed.
const OCR_MARGIN: Duration = Duration::from_secs(5);

impl Runner<'_> {
    /// Writes the screen to a PPM file in the node's state dir.
    fn screendump(&mut self) -> Result<PathBuf, StepError> {
        let ppm = self.m.state_dir().join("screenshot.ppm");
        let _ = std::fs::remove_file(&ppm);
        let said = self.monitor(&format!("screendump {}", ppm.display()))?;
        if !ppm.exists() {
            let why = if said.is_empty() { "no reason given".to_owned() } else { said };
            let msg = format!("QEMU did not write a screendump ({why}); does the node have a display?");
            return Err(StepError::failed(self.failure(msg, None, None)));
        }
        Ok(ppm)
    }

    /// Screenshots until tesseract reads text matching `pattern` on one.
    /// nixvm-driver reads the screenshot as it is; the stock driver also
    /// reads two ImageMagick-processed copies of it and matches any of the
    /// three (docs/descriptions.md says so).
    pub(super) fn wait_for_text(&mut self, pattern: &str) -> StepResult {
        let re = self.compile(pattern)?;
        let tesseract = tools::find(tools::TESSERACT)
            .map_err(|missing| StepError::failed(self.failure(missing.to_string(), None, None)))?;
        let mut last = String::new();
        // The last screen read: the same picture gives the same text, so an
        // unchanged screen is not read again (tesseract takes about half a
        // second of host CPU per run).
        let mut last_image: Option<Vec<u8>> = None;
        let found = self.poll(|r| {
            let ppm = r.screendump()?;
            let image = std::fs::read(&ppm).ok();
            if image.is_some() && image == last_image {
                return Ok(None);
            }
            let started = Instant::now();
            let text = r.ocr(&tesseract, &ppm)?;
            let hit = re.is_match(&text);
            last = text;
            last_image = image;
            if !hit {
                r.breathe(started.elapsed())?;
            }
            Ok(hit.then_some(()))
        })?;
        if found.is_some() {
            return Ok(());
        }
        let mut f = self.failure(
            format!(
                "text matching `{pattern}` did not appear on the screen within {:.1} seconds (the last OCR \
                 result is the output below)",
                self.timeout_secs()
            ),
            None,
            None,
        );
        f.output = Some(last);
        Err(StepError::failed(f))
    }

    /// Runs tesseract on `image`, bounded by the step's deadline plus
    /// [`OCR_MARGIN`] and by the run's abort.
    fn ocr(&mut self, tesseract: &Path, image: &Path) -> Result<String, StepError> {
        let fail = |r: &Self, msg: String| StepError::failed(r.failure(msg, None, None));
        let mut child = std::process::Command::new(tesseract)
            .arg(image)
            .args(TESSERACT_ARGS)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| fail(self, format!("cannot run {}: {e}", tesseract.display())))?;
        let drain = |pipe: Option<Box<dyn Read + Send>>| {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                if let Some(p) = pipe {
                    let _ = p.take(1 << 20).read_to_end(&mut buf);
                }
                buf
            })
        };
        let out = drain(child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
        let err = drain(child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
        let bound = self.deadline + OCR_MARGIN;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if Instant::now() < bound && self.abort.check().is_ok() => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break None;
                }
            }
        };
        let stdout = out.join().unwrap_or_default();
        let stderr = err.join().unwrap_or_default();
        match status {
            Some(s) if s.success() => Ok(String::from_utf8_lossy(&stdout).into_owned()),
            Some(s) => Err(fail(
                self,
                format!("OCR failed: tesseract exited with {s}: {}", String::from_utf8_lossy(&stderr).trim()),
            )),
            None => {
                self.abort.check().map_err(StepError::Stopped)?;
                Err(fail(self, "OCR took too long: tesseract was killed at the step's deadline".to_owned()))
            }
        }
    }
}
