//! What every command shares: the model named by `-m`, `VISUALGLM_MODEL` or a hub id; no
//! colour codes off a terminal; one summary line for quantization fallbacks; flags only on
//! the commands they affect.

use std::path::{Path, PathBuf};
use std::process::Command;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_visualglm"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("VISUALGLM_MODEL")
        .env_remove("NO_COLOR");
    c
}

fn shapes() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/shapes")
}

fn ok(out: &std::process::Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    stderr
}

#[test]
fn every_command_that_reads_a_model_takes_m_and_visualglm_model() {
    let dir = tempfile::tempdir().unwrap();
    let st = dir.path().join("m.safetensors");
    ok(&bin()
        .args(["convert", "--out"])
        .arg(&st)
        .env("VISUALGLM_MODEL", shapes())
        .output()
        .unwrap());
    assert!(st.is_file());
    let gguf = dir.path().join("m.gguf");
    ok(&bin()
        .args(["quantize", "-m"])
        .arg(shapes())
        .arg("--out")
        .arg(&gguf)
        .args(["--type", "q8_0"])
        .output()
        .unwrap());
    assert!(gguf.is_file());
    let stages = dir.path().join("stages.safetensors");
    // inspect defaults like the others (device and dtype `auto`).
    ok(&bin()
        .args(["inspect", "-m"])
        .arg(shapes())
        .args(["--input-ids", "5,6,7", "--out"])
        .arg(&stages)
        .output()
        .unwrap());
    assert!(stages.is_file());
    // A hub id goes through the hub cache (here: offline, not cached, a clear error).
    for cmd in [
        vec!["convert", "--out", "x.safetensors"],
        vec!["quantize", "--out", "x.gguf"],
        vec!["inspect", "--input-ids", "1", "--out", "x.safetensors"],
        vec![
            "lora",
            "merge",
            "--lora",
            "nowhere",
            "--out",
            "x.safetensors",
        ],
        vec!["bench", "--glm-layers", "1"],
        vec!["train", "--data", "x.json", "--out", "x-run"],
    ] {
        let out = bin()
            .args(&cmd)
            .args(["-m", "nobody-here/no-such-model", "--offline"])
            .env("HF_HUB_CACHE", dir.path().join("hub"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{cmd:?}");
        assert!(stderr.contains("not in the hub cache"), "{cmd:?}: {stderr}");
    }
}

#[test]
fn off_a_terminal_logs_have_no_colour_and_fallbacks_are_one_line() {
    // The shipped model is 128 wide: no layer takes q4k (256-blocks), all fall back.
    let out = bin()
        .args([
            "describe",
            "assets/shapes/examples/shapes-0.png",
            "-m",
            "assets/shapes",
        ])
        .args(["--quantize", "q4k"])
        .output()
        .unwrap();
    let stderr = ok(&out);
    assert!(!stderr.contains('\u{1b}'), "colour codes in {stderr:?}");
    let warnings: Vec<&str> = stderr.lines().filter(|l| l.contains("WARN")).collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    assert!(warnings[0].contains("could not take q4k"), "{stderr}");
    // -v lists them one by one.
    let out = bin()
        .args([
            "-vv",
            "describe",
            "assets/shapes/examples/shapes-0.png",
            "-m",
            "assets/shapes",
        ])
        .args(["--quantize", "q4k"])
        .output()
        .unwrap();
    let stderr = ok(&out);
    assert!(
        stderr
            .lines()
            .filter(|l| l.contains("is not a multiple of 256"))
            .count()
            > 1
    );
}

#[test]
fn flags_are_accepted_only_by_the_commands_they_affect() {
    let dir = tempfile::tempdir().unwrap();
    let out = bin()
        .args(["convert", "--no-huge-pages", "-m", "assets/shapes", "--out"])
        .arg(dir.path().join("x.safetensors"))
        .output()
        .unwrap();
    assert!(!out.status.success(), "convert allocates no model to run");
    ok(&bin()
        .args([
            "describe",
            "--no-huge-pages",
            "assets/shapes/examples/shapes-0.png",
        ])
        .args(["-m", "assets/shapes"])
        .output()
        .unwrap());
}
