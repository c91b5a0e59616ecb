//! Tests of the flake area (see main.rs).
