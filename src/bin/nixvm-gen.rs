fn main() -> std::process::ExitCode {
    nixvm_gen::cli::app::main()
}
