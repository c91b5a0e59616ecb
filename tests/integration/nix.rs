//! Tests of the nix area (see main.rs).
