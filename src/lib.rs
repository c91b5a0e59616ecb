//! nixvm-gen: declarative NixOS VM tests for flakes.
//!
//! The pipeline flows one way: [`flake`] and [`spec`] read Nix source into plain
//! data, [`codegen`] renders that data into Nix, and [`driver`] executes the
//! JSON [`plan`] that codegen embeds. [`eval`] and [`store`] are the only places
//! that talk to a real Nix installation or read its formats.

pub mod cache;
pub mod cli;
pub mod codegen;
pub mod config;
pub mod diagnostic;
pub mod driver;
pub mod eval;
pub mod exit_codes;
pub mod flake;
pub mod fsutil;
pub mod guest;
pub mod import;
pub mod incremental;
pub mod limits;
pub mod matrix;
pub mod plan;
pub mod project;
pub mod report;
pub mod scaffold;
pub mod spec;
pub mod store;
