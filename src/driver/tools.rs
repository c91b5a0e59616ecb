//! The host programs the driver runs, resolved in one place.
//!
//! Inside a Nix build `PATH=/path-not-set`: the driver finds these programs
//! only because its package puts their packages on `PATH` (nix/package.nix
//! and `lib.mkDriver`'s wrapper, as the stock driver's package does with
//! `wrapProgram --prefix PATH`). A program that is still missing is reported
//! with its name and the package that provides it, never as a bare "No such
//! file or directory".

use std::ffi::OsStr;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A program the driver runs on the host, and where it comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tool {
    /// The executable's name.
    pub program: &'static str,
    /// The nixpkgs attribute that provides it (Debian's package has the same
    /// name for these).
    pub package: &'static str,
    /// What the driver uses it for (shown in errors).
    pub purpose: &'static str,
}

/// One `vde_switch` per VLAN.
pub const VDE_SWITCH: Tool = Tool { program: "vde_switch", package: "vde2", purpose: "VLAN switches" };
/// Screenshots: QEMU's `screendump` writes PPM.
pub const PNMTOPNG: Tool =
    Tool { program: "pnmtopng", package: "netpbm", purpose: "converting screenshots to PNG" };

/// OCR for `waitForText`: the stock driver's `tesseract` call (its
/// `enableOCR` option puts it on the driver's `PATH`; so does `lib.mkDriver`).
pub const TESSERACT: Tool = Tool {
    program: "tesseract",
    package: "tesseract",
    purpose: "reading the screen (waitForText, enableOCR)",
};

/// The stock OCR's preprocessing (`magick convert …`): two processed copies
/// of each screenshot are read besides the raw one.
pub const MAGICK: Tool = Tool {
    program: "magick",
    package: "imagemagick_light",
    purpose: "preparing screenshots for OCR (waitForText)",
};

/// Every host program the driver may run; nix/package.nix puts exactly these
/// packages on the wrapped driver's `PATH` (a test keeps the two in sync).
pub const ALL: &[Tool] = &[VDE_SWITCH, PNMTOPNG];
/// Host programs only tests with OCR need: `lib.mkDriver` adds them when the
/// test sets `enableOCR` (which nixvm-gen does for a `waitForText` step), as
/// the stock driver's package does.
pub const OCR: &[Tool] = &[TESSERACT, MAGICK];

/// A tool that is not on `PATH`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct MissingTool {
    pub tool: Tool,
    /// `PATH` as the driver saw it (`None` when unset).
    pub path: Option<String>,
}

impl fmt::Display for MissingTool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Tool { program, package, purpose } = self.tool;
        write!(f, "`{program}` (from the {package} package, needed for {purpose}) is not on PATH")?;
        match &self.path {
            Some(p) if !p.is_empty() => write!(f, " (PATH={p})")?,
            _ => f.write_str(" (PATH is empty)")?,
        }
        write!(
            f,
            "; use the nixvm-driver package, which puts {package} on its PATH, or add {package} to PATH"
        )
    }
}

/// The absolute path of `tool` on `path` (a `PATH` value).
pub fn find_on(tool: Tool, path: Option<&OsStr>) -> Result<PathBuf, MissingTool> {
    let found = path.and_then(|p| {
        std::env::split_paths(p)
            .filter(|d| d.is_absolute())
            .map(|d| d.join(tool.program))
            .find(|c| is_executable(c))
    });
    found.ok_or_else(|| MissingTool { tool, path: path.map(|p| p.to_string_lossy().into_owned()) })
}

/// The absolute path of `tool` on the driver's `PATH`.
pub fn find(tool: Tool) -> Result<PathBuf, MissingTool> {
    find_on(tool, std::env::var_os("PATH").as_deref())
}

/// A [`Command`] for `tool`, resolved on the driver's `PATH`.
pub fn command(tool: Tool) -> Result<Command, MissingTool> {
    find(tool).map(Command::new)
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn finds_executables_only_on_absolute_path_entries() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        // Not executable in a; executable in b.
        std::fs::write(a.join("vde_switch"), "").unwrap();
        std::fs::write(b.join("vde_switch"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(b.join("vde_switch"), std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = std::env::join_paths([&a, &b]).unwrap();
        assert_eq!(find_on(VDE_SWITCH, Some(&path)).unwrap(), b.join("vde_switch"));
        // A relative entry is never searched (it would depend on the cwd).
        assert!(find_on(VDE_SWITCH, Some(OsStr::new("relative/dir"))).is_err());
    }

    #[test]
    fn missing_tools_name_program_and_package() {
        let err = find_on(VDE_SWITCH, Some(OsStr::new("/path-not-set"))).unwrap_err();
        assert_eq!(
            err.to_string(),
            "`vde_switch` (from the vde2 package, needed for VLAN switches) is not on PATH \
             (PATH=/path-not-set); use the nixvm-driver package, which puts vde2 on its PATH, \
             or add vde2 to PATH"
        );
        let err = find_on(PNMTOPNG, None).unwrap_err().to_string();
        assert!(
            err.starts_with("`pnmtopng` (from the netpbm package") && err.contains("PATH is empty"),
            "{err}"
        );
    }

    #[test]
    fn the_nix_package_wraps_every_tool() {
        // nix/package.nix lists the packages it puts on the driver's PATH;
        // a tool added here must be added there (and to lib.mkDriver).
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        for file in ["nix/package.nix", "nix/lib.nix"] {
            let text = std::fs::read_to_string(root.join(file)).unwrap();
            for tool in ALL {
                assert!(text.contains(tool.package), "{file} does not put {} on PATH", tool.package);
            }
        }
    }
}
