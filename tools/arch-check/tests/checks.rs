//! The architecture rules against the real workspace, one test per rule.

use visualglm_arch_check::{atomic, cycles, deps, format_list, names, sizes, workspace_root};

type CheckFn = fn(&std::path::Path) -> Result<Vec<String>, String>;

fn assert_clean(what: &str, check: CheckFn) {
    let violations = check(&workspace_root())
        .unwrap_or_else(|e| panic!("{what}: the check could not run:\n{e}"));
    assert!(
        violations.is_empty(),
        "{what}: {} violation(s) (configuration: tools/arch-check/src/rules.rs):\n{}",
        violations.len(),
        format_list(&violations)
    );
}

#[test]
fn no_file_level_import_cycles() {
    assert_clean("import cycles between files", cycles::check);
}

#[test]
fn long_files_state_a_reason() {
    assert_clean("files over 600 lines without a reason", sizes::check);
}

#[test]
fn one_atomic_write() {
    assert_clean(
        "rename(/.persist( outside the atomic-write home",
        atomic::check,
    );
}

#[test]
fn core_library_has_no_server_cli_or_plot_crates() {
    assert_clean(
        "denied crates in the core library's dependencies",
        deps::check,
    );
}

#[test]
fn layer_crate_has_no_visualglm_names() {
    assert_clean("VisualGLM names in the layer crate", names::check);
}
