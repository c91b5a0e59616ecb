//! What the guest's display shows: screenshots, and its text read by OCR
//! (`waitForText`, as the stock driver's `wait_for_text` with `enableOCR`:
//! NixOS/nixpkgs nixos/lib/test-driver/src/test_driver/machine/ocr.py at
//! 19f415db4e87e0e1a7b2e3fc606f7b7c66d92d8d).

use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
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

    /// Screenshots until tesseract reads text matching `pattern` on one
    /// ([`Runner::read_screen`]: the raw picture and, with ImageMagick, two
    /// processed copies, as the stock driver).
    pub(super) fn wait_for_text(&mut self, pattern: &str) -> StepResult {
        let re = self.compile(pattern)?;
        let tesseract = tools::find(tools::TESSERACT)
            .map_err(|missing| StepError::failed(self.failure(missing.to_string(), None, None)))?;
        // The stock driver also reads two processed copies; without
        // ImageMagick only the raw screenshot is read (never more forgiving).
        let magick = match tools::find(tools::MAGICK) {
            Ok(path) => Some(path),
            Err(missing) => {
                let note = format!("{missing}; OCR reads the raw screenshot only, not the processed copies");
                self.log.warning(Some(&self.node()), &note);
                None
            }
        };
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
            let (hit, texts) = r.read_screen(&tesseract, magick.as_deref(), &ppm, &re)?;
            last = texts.join("\n---- next reading ----\n");
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

    /// OCR of the screenshot `ppm` as the stock `get_screen_text_variants`:
    /// the raw picture, then (with `magick`) a processed copy and a
    /// processed negative, until one reading matches `re`. Returns whether
    /// one did and every reading made.
    fn read_screen(
        &mut self,
        tesseract: &Path,
        magick: Option<&Path>,
        ppm: &Path,
        re: &regex::Regex,
    ) -> Result<(bool, Vec<String>), StepError> {
        let mut texts = vec![self.ocr(tesseract, ppm)?];
        if let Some(magick) = magick {
            for negate in [false, true] {
                if texts.iter().any(|t| crate::spec::pattern::is_match(re, t)) {
                    break;
                }
                let (args, processed) = magick_args(ppm, negate);
                let out = self.host_tool(magick, &args)?;
                if !out.0.success() {
                    let msg = format!(
                        "Image processing failed ({}): {}",
                        out.0,
                        String::from_utf8_lossy(&out.2).trim()
                    );
                    return Err(StepError::failed(self.failure(msg, None, None)));
                }
                texts.push(self.ocr(tesseract, &processed)?);
            }
        }
        Ok((texts.iter().any(|t| crate::spec::pattern::is_match(re, t)), texts))
    }

    /// Runs tesseract on `image` (the stock `_run_tesseract`).
    fn ocr(&mut self, tesseract: &Path, image: &Path) -> Result<String, StepError> {
        let mut args = vec![image.as_os_str().to_owned()];
        args.extend(TESSERACT_ARGS.iter().map(OsString::from));
        let (status, stdout, stderr) = self.host_tool(tesseract, &args)?;
        if status.success() {
            return Ok(String::from_utf8_lossy(&stdout).into_owned());
        }
        let msg = format!(
            "OCR failed: tesseract exited with {status}: {}",
            String::from_utf8_lossy(&stderr).trim()
        );
        Err(StepError::failed(self.failure(msg, None, None)))
    }

    /// Runs a host program with `args`, its output captured (1 MiB each),
    /// bounded by the step's deadline plus [`OCR_MARGIN`] and by the run's
    /// abort.
    fn host_tool(
        &mut self,
        program: &Path,
        args: &[OsString],
    ) -> Result<(ExitStatus, Vec<u8>, Vec<u8>), StepError> {
        let fail = |r: &Self, msg: String| StepError::failed(r.failure(msg, None, None));
        let mut child = std::process::Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| fail(self, format!("cannot run {}: {e}", program.display())))?;
        let drain = |pipe: Option<Box<dyn Read + Send>>| {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                if let Some(mut p) = pipe {
                    let _ = (&mut p).take(1 << 20).read_to_end(&mut buf);
                    // The rest is dropped, so the program never blocks on a full pipe.
                    let _ = std::io::copy(&mut p, &mut std::io::sink());
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
            Some(status) => Ok((status, stdout, stderr)),
            None => {
                self.abort.check().map_err(StepError::Stopped)?;
                let name = program.file_name().unwrap_or_default().to_string_lossy().into_owned();
                Err(fail(self, format!("{name} took too long: it was killed at the step's deadline")))
            }
        }
    }
}

/// The stock `_preprocess_screenshot`'s ImageMagick call for `ppm` and the
/// file it writes (`<stem>.positive.png` / `<stem>.negative.png` next to it).
fn magick_args(ppm: &Path, negate: bool) -> (Vec<OsString>, PathBuf) {
    let stem = ppm.file_stem().unwrap_or_default().to_string_lossy().into_owned();
    let out = ppm.with_file_name(format!("{stem}.{}.png", if negate { "negative" } else { "positive" }));
    let mut args: Vec<OsString> = [
        "convert",
        "-filter",
        "Catrom",
        "-density",
        "72",
        "-resample",
        "300",
        "-contrast",
        "-normalize",
        "-despeckle",
        "-type",
        "grayscale",
        "-sharpen",
        "1",
        "-posterize",
        "3",
    ]
    .iter()
    .map(OsString::from)
    .collect();
    if negate {
        args.push("-negate".into());
    }
    args.extend(["-gamma", "100", "-blur", "1x65535"].iter().map(OsString::from));
    args.push(ppm.as_os_str().to_owned());
    args.push(out.as_os_str().to_owned());
    (args, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magick_is_called_as_the_stock_driver_calls_it() {
        let (args, out) = magick_args(Path::new("/s/screenshot.ppm"), true);
        let shown: Vec<String> = args.iter().map(|a| a.to_string_lossy().into_owned()).collect();
        assert_eq!(
            shown.join(" "),
            "convert -filter Catrom -density 72 -resample 300 -contrast -normalize -despeckle -type grayscale \
             -sharpen 1 -posterize 3 -negate -gamma 100 -blur 1x65535 /s/screenshot.ppm /s/screenshot.negative.png"
        );
        assert_eq!(out, Path::new("/s/screenshot.negative.png"));
        let (args, out) = magick_args(Path::new("/s/screenshot.ppm"), false);
        assert!(!args.iter().any(|a| a == "-negate"));
        assert_eq!(out, Path::new("/s/screenshot.positive.png"));
    }
}
