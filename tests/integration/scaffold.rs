//! Tests of the scaffold area (see main.rs).
