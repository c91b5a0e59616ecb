//! Captures: a step's stdout stored under a name and seen by every later
//! command, on every node, as the environment variable `$NAME`.
//!
//! The value never enters command text, so it cannot inject: the host writes
//! it to a file in the directory every node mounts at `/tmp/shared` (the
//! stock driver's `Machine.shared_dir = tmp_dir / "shared-xchg"`, which
//! `copy_from_host` uses the same way; NixOS/nixpkgs
//! `nixos/lib/test-driver/src/test_driver/machine/__init__.py` at
//! b09f2c739a3e49b80049c1fd80bd8a393cc7fbc1, and `SHARED_DIR` →
//! `/tmp/shared` in `nixos/modules/virtualisation/qemu-vm.nix`), and each
//! later command starts with a fixed preamble that reads the files with
//! bash's `read` builtin (no program started, which costs tens of ms under
//! TCG). Both backends prefix commands with [`with_captures`], so the guest
//! runs byte-identical text.

/// The directory (inside the shared directory) holding one file per capture.
pub const CAPTURE_DIR: &str = ".nixvm-captures";
/// Where a guest sees [`CAPTURE_DIR`].
pub const GUEST_CAPTURE_DIR: &str = "/tmp/shared/.nixvm-captures";

pub use crate::spec::captures::{reserved, valid_capture_name};

/// The shell code that makes `names` (captured earlier, in order)
/// environment variables of the command that follows: bash's `read` of each
/// file, which keeps every byte but NUL (a value never has one, see
/// [`capture_value`]); a missing file leaves the variable unset, and bash
/// says so on stderr. Empty without names, so tests without captures run
/// exactly the commands they did before.
pub fn preamble(names: &[String]) -> String {
    // Names are identifiers (validated; any other is left out here too, as
    // it could be shell code), so they need no quotes.
    let names: Vec<&str> = names.iter().map(String::as_str).filter(|n| valid_capture_name(n)).collect();
    if names.is_empty() {
        return String::new();
    }
    format!(
        "for __c in {}; do IFS= read -r -d '' $__c <{GUEST_CAPTURE_DIR}/$__c || :; export $__c; done; unset __c; ",
        names.join(" ")
    )
}

/// `command` as sent to the guest when `names` have been captured before it.
pub fn with_captures(names: &[String], command: &str) -> String {
    format!("{}{command}", preamble(names))
}

/// The value a capture stores: the output without trailing newlines. Refused
/// when it holds a NUL byte, which no environment variable can hold.
pub fn capture_value(output: &str) -> Result<&str, CaptureError> {
    let value = output.trim_end_matches('\n');
    if value.contains('\0') {
        return Err(CaptureError::Nul);
    }
    Ok(value)
}

/// Why a capture could not be stored.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum CaptureError {
    #[error("the output contains a NUL byte, which an environment variable cannot hold")]
    Nul,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_preamble_reads_each_capture() {
        assert_eq!(with_captures(&[], "true"), "true");
        assert_eq!(
            with_captures(&["A".into(), "B".into()], "echo \"$A\""),
            "for __c in A B; do IFS= read -r -d '' $__c </tmp/shared/.nixvm-captures/$__c || :; \
             export $__c; done; unset __c; echo \"$A\""
        );
        assert_eq!(with_captures(&["A;rm -rf /".into()], "true"), "true", "only names are read");
    }

    #[test]
    fn values_lose_trailing_newlines_only() {
        assert_eq!(capture_value("x\n\n"), Ok("x"));
        assert_eq!(capture_value("\nx \n"), Ok("\nx "));
        assert_eq!(capture_value("a\0b"), Err(CaptureError::Nul));
    }
}
