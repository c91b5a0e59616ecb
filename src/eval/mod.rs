//! Asking the real Nix evaluator (`nix eval`, `nix-instantiate`) what static
//! analysis cannot tell.
//!
//! Every call runs offline-friendly (no flake registry, no lock file
//! writes), with stdin closed, output captured and a timeout, so that a
//! hanging download never hangs `nixvm-gen`.

mod runner;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use runner::{NixCommand, command_line, shell_word};

/// Default time limit of one evaluator call. Evaluating a flake's module
/// names takes well under a second; a minute means something is wrong
/// (usually network access).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Flags that keep `nix` from touching the network on its own: the global
/// flake registry (`''` is broken in Nix 2.8, `/dev/null` works) and writing
/// `flake.lock` into the user's tree. `download-attempts = 1` makes inputs
/// that really need a download fail fast instead of retrying with backoff.
pub const OFFLINE_FLAGS: &[&str] = &[
    "--extra-experimental-features",
    "nix-command flakes",
    "--option",
    "flake-registry",
    "/dev/null",
    "--option",
    "download-attempts",
    "1",
    "--no-write-lock-file",
];

/// A failed evaluator call: the command, its status and its stderr.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("`{command}` is not installed; install Nix or run without --eval")]
    NotInstalled { command: String },
    #[error("`{command}` failed ({status}):\n{stderr}")]
    Failed { command: String, status: String, stderr: String },
    /// The flake has inputs that must be downloaded (`github:`, `git+https:`
    /// …) and the download failed.
    #[error(
        "`{command}` needs the network to fetch the flake's inputs, and the download failed.\n\
         Flakes with `github:`/`git+https:` inputs cannot be evaluated offline: run where the \
         inputs can be fetched (or are in the Nix store), or use `path:` inputs.\n{stderr}"
    )]
    NeedsNetwork { command: String, stderr: String },
    #[error("`{command}` did not finish within {seconds} s and was killed")]
    Timeout { command: String, seconds: u64 },
    #[error("`{command}` printed unexpected output ({message}):\n{stdout}")]
    BadOutput { command: String, message: String, stdout: String },
    #[error("failed to run `{command}`")]
    Io {
        command: String,
        #[source]
        source: std::io::Error,
    },
}

/// Whether `program` can be run (it is on `PATH`).
pub fn is_installed(program: &str) -> bool {
    let Some(path) = std::env::var_os("PATH") else { return false };
    std::env::split_paths(&path).any(|dir| {
        let p = dir.join(program);
        std::fs::metadata(&p).is_ok_and(|m| m.is_file() && is_executable(&m))
    })
}

fn is_executable(m: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    m.permissions().mode() & 0o111 != 0
}

/// The flake reference `path:<abs dir>` (a `path:` reference ignores git, so
/// untracked files count, and needs no lock on the directory itself).
pub fn flake_ref(dir: &Path) -> Result<String, EvalError> {
    let abs =
        std::path::absolute(dir).map_err(|source| EvalError::Io { command: "nix eval".into(), source })?;
    let mut out = String::from("path:");
    for c in abs.to_string_lossy().chars() {
        match c {
            // Characters with a meaning in flake URLs.
            '%' | '#' | '?' | ' ' => out.push_str(&format!("%{:02X}", c as u32)),
            c => out.push(c),
        }
    }
    Ok(out)
}

/// The names of the flake's `nixosModules`, from `nix eval`. A flake without
/// `nixosModules` has none.
pub fn module_names(flake_dir: &Path, timeout: Duration) -> Result<Vec<String>, EvalError> {
    let installable = format!("{}#nixosModules", flake_ref(flake_dir)?);
    let mut cmd = NixCommand::new("nix", timeout);
    // The flags go after the subcommand: Nix 2.8 rejects `--no-write-lock-file` before it.
    cmd.arg("eval").args(OFFLINE_FLAGS).args(["--json", &installable, "--apply", "builtins.attrNames"]);
    let out = match cmd.run() {
        Ok(out) => out,
        Err(EvalError::Failed { stderr, .. }) if stderr.contains("does not provide attribute") => {
            return Ok(Vec::new());
        }
        Err(e) => return Err(e),
    };
    serde_json::from_str::<Vec<String>>(out.trim()).map_err(|e| EvalError::BadOutput {
        command: cmd.to_string(),
        message: format!("expected a JSON list of names: {e}"),
        stdout: out,
    })
}

/// Evaluates a description file that is not plain data, with every
/// `nodes.<n>` replaced by `null` (node configurations are NixOS modules,
/// which need nixpkgs and are not needed to read the steps).
///
/// The path is passed with `--argstr`, never spliced into the expression,
/// so no file name can change the expression.
pub fn eval_description(path: &Path, timeout: Duration) -> Result<serde_json::Value, EvalError> {
    let abs: PathBuf = std::path::absolute(path)
        .map_err(|source| EvalError::Io { command: "nix-instantiate".into(), source })?;
    let mut cmd = NixCommand::new("nix-instantiate", timeout);
    cmd.args(["--eval", "--strict", "--json", "--argstr", "file"])
        .arg(abs.as_os_str())
        .args(["-E", DESCRIPTION_EXPR]);
    let out = cmd.run()?;
    serde_json::from_str(out.trim()).map_err(|e| EvalError::BadOutput {
        command: cmd.to_string(),
        message: format!("expected JSON: {e}"),
        stdout: out,
    })
}

/// Applied to `--argstr file <abs path>`; `import` accepts an absolute path
/// string. A description without `nodes` stays without (the converter
/// reports that). A description that is a function gets arguments that
/// fail when used: `pkgs` and `nodes` exist only in the generated check.
const DESCRIPTION_EXPR: &str = "{ file }: let f = import file; \
     d = if builtins.isFunction f then f (builtins.mapAttrs (n: _: throw \"nixvm-gen --eval: `${n}` is only \
     known in the generated check; use it in a step's string instead of the test's structure\") \
     (builtins.functionArgs f)) else f; in \
     d // (if d ? nodes then { nodes = builtins.mapAttrs (_: _: null) d.nodes; } else { })";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flake_refs_escape_url_characters() {
        let r = flake_ref(Path::new("/tmp/a b#c?d%e")).expect("ref");
        assert_eq!(r, "path:/tmp/a%20b%23c%3Fd%25e");
    }

    #[test]
    fn offline_flags_avoid_the_broken_empty_registry() {
        let joined = OFFLINE_FLAGS.join(" ");
        assert!(joined.contains("flake-registry /dev/null"));
        assert!(!joined.contains("flake-registry ''"));
        assert!(joined.contains("--no-write-lock-file"));
    }

    #[test]
    fn missing_programs_are_not_installed() {
        assert!(!is_installed("nixvm-gen-surely-not-a-program"));
        assert!(is_installed("sh"));
    }
}
