//! What runs inside the VM: the shell commands a step sends through the
//! backdoor, and their quoting. Shared by both backends (the generated Python
//! testScript in [`crate::codegen`] and [`crate::driver`]), so they execute
//! byte-identical commands, and neither backend depends on the other.

pub mod commands;
mod quote;

pub use quote::shell_quote;
