//! The one integration-test binary: it runs the real `nixvm-gen` and
//! `nixvm-driver` binaries against fixtures in `tests/fixtures/`.
//!
//! Goldens are refreshed with `UPDATE_GOLDENS=1 cargo test --test integration`.

mod util;

mod cli;
mod codegen;
mod driver;
mod fanout;
mod flake;
mod flake_constructs;
mod flake_real_world;
mod fuzz;
mod hostile;
mod import;
mod incremental;
mod nix;
mod regex_dialect;
mod sandbox;
mod scaffold;
mod spec;
