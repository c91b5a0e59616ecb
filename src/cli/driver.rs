//! `nixvm-driver` (also installed as `nixos-test-driver`).

use std::process::ExitCode;

/// Entry point of the `nixvm-driver` binary.
pub fn main() -> ExitCode {
    eprintln!("nixvm-driver: not implemented yet");
    ExitCode::from(crate::exit_codes::INTERNAL as u8)
}
