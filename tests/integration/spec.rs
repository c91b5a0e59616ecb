//! Tests of the spec area (see main.rs).
