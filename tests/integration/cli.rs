//! Tests of the cli area (see main.rs).
