//! `init`, `new` and `wire`: creating test projects and wiring generated
//! checks into existing flakes.
