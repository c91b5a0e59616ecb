//! Tests of the driver area (see main.rs).
