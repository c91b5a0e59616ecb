//! Command-line front ends. The binaries in `src/bin/` only call [`app::main`]
//! and [`driver::main`]; errors become `anyhow` here and nowhere else.

pub mod app;
pub mod driver;
pub mod eval;
pub mod import;
pub mod matrix;
pub mod plan;
pub mod report;
pub mod scaffold;

use std::io::IsTerminal;

/// Whether to colour output on stderr: only on a terminal, never with
/// `NO_COLOR` set (<https://no-color.org>).
pub fn stderr_color() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stderr().is_terminal()
}
