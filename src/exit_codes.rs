//! Documented process exit codes of `nixvm-gen` and `nixvm-driver`.
//!
//! They are part of the interface: the pre-commit hook and CI scripts branch on
//! them, so a value never changes meaning once released.

/// Everything went fine (for `check`: the generated file is up to date).
pub const OK: i32 = 0;
/// `nixvm-gen check`: the generated file is stale (a diff is printed).
/// `nixvm-driver`: at least one step failed.
pub const STALE_OR_FAILED: i32 = 1;
/// A description or flake is invalid (diagnostics are printed), or the
/// command line is wrong.
pub const INVALID_INPUT: i32 = 2;
/// The Nix evaluator or another external tool failed.
pub const EXTERNAL_TOOL: i32 = 3;
/// I/O error or internal error.
pub const INTERNAL: i32 = 4;
/// `nixvm-driver`: a VM failed to start or died (boot timeout, QEMU exited),
/// a VLAN switch died, or in the teardown a VM or switch had to be killed
/// after the grace period (each named with phase `teardown` in the report).
pub const VM_FAILED: i32 = 5;
/// `nixvm-driver`: the global timeout expired, also during the teardown (the
/// report was still written).
pub const GLOBAL_TIMEOUT: i32 = 6;
/// `nixvm-driver`: interrupted by SIGINT/SIGTERM/SIGHUP (the report was still written).
pub const INTERRUPTED: i32 = 130;
