//! The `visualglm` command-line tool.

mod cli;
mod plot;

/// glibc's allocator, with large buffers (weights, big activations) on transparent huge pages.
#[global_allocator]
static ALLOCATOR: visualglm_alloc::HugePageAlloc = visualglm_alloc::HugePageAlloc;

fn main() -> std::process::ExitCode {
    visualglm_alloc::tune_for_inference();
    cli::main()
}
