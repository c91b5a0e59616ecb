/// mimalloc instead of the system allocator: a cold `check` allocates and
/// frees millions of small objects (syntax trees, specs, strings), many of
/// them across the parse threads; glibc's malloc and free were ~22 % of its
/// instructions (callgrind, 1,000 descriptions; benches/RESULTS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    nixvm_gen::cli::app::main()
}
