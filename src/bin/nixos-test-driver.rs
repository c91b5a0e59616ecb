//! The same driver under the name the NixOS test derivation runs.
fn main() -> std::process::ExitCode {
    nixvm_gen::cli::driver::main()
}
