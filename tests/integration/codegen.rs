//! Tests of the codegen area (see main.rs).
