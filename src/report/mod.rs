//! `nixvm-gen report`: the fan-in. Reads the results of many check builds
//! ([`read`]) and merges them into one JUnit file, a terminal summary and
//! one self-contained HTML page.

pub mod read;
