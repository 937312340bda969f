//! The `visualglm` command-line tool.

mod cli;

fn main() -> std::process::ExitCode {
    visualglm::allocator::tune_for_inference();
    cli::main()
}
