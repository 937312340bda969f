//! The `visualglm` command-line tool.

mod cli;

/// glibc's allocator, with large buffers (weights, big activations) on transparent huge pages.
#[global_allocator]
static ALLOCATOR: visualglm::allocator::HugePageAlloc = visualglm::allocator::HugePageAlloc;

fn main() -> std::process::ExitCode {
    visualglm::allocator::tune_for_inference();
    cli::main()
}
