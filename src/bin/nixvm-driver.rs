fn main() -> std::process::ExitCode {
    nixvm_gen::cli::driver::main()
}
