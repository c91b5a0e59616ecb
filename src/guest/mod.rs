//! What runs inside the VM: the shell commands a step sends through the
//! backdoor, and their quoting. Shared by both backends (the generated Python
//! testScript in [`crate::codegen`] and [`crate::driver`]), so they execute
//! byte-identical commands, and neither backend depends on the other; plus
//! the driver's faster in-guest protocol ([`backdoor`]).

pub mod backdoor;
pub mod captures;
pub mod commands;
mod quote;

pub use quote::shell_quote;
