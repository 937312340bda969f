//! Prints every architecture violation in the workspace; exits 1 if there is any.

use std::process::ExitCode;

use visualglm_arch_check::{format_list, workspace_root, CHECKS};

fn main() -> ExitCode {
    let root = workspace_root();
    println!("architecture check of {}\n", root.display());
    let mut failed = 0;
    for check in CHECKS {
        match (check.run)(&root) {
            Ok(v) if v.is_empty() => println!("[ok]   {}: {}", check.name, check.rule),
            Ok(v) => {
                failed += 1;
                println!(
                    "[FAIL] {}: {} ({} violations)",
                    check.name,
                    check.rule,
                    v.len()
                );
                print!("{}", format_list(&v));
            }
            Err(e) => {
                failed += 1;
                println!(
                    "[ERR]  {}: {}\n    {}",
                    check.name,
                    check.rule,
                    e.replace('\n', "\n    ")
                );
            }
        }
    }
    println!("\n{failed} of {} checks failed", CHECKS.len());
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
