//! `visualglm embed`: unit embeddings from the ITC heads whose documented scoring ranks texts
//! exactly as `eval retrieval` does; a model without heads is a clear error.

use std::path::Path;
use std::process::Command;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_visualglm"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("VISUALGLM_MODEL");
    c
}

fn examples() -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/shapes/examples");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("examples.json")).unwrap()).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let img = dir.join(e["img"].as_str().unwrap());
            (
                img.display().to_string(),
                e["label"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[test]
fn embeddings_rank_texts_as_eval_retrieval_does() {
    let dir = tempfile::tempdir().unwrap();
    let ex = examples();
    let mut cmd = bin();
    cmd.args(["embed", "-m", "assets/shapes"]);
    for (img, _) in &ex {
        cmd.args(["--image", img]);
    }
    for (_, label) in &ex {
        cmd.args(["--text", label]);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2 * ex.len());
    let vec = |v: &serde_json::Value| -> Vec<f64> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect()
    };
    let images: Vec<Vec<Vec<f64>>> = lines[..ex.len()]
        .iter()
        .map(|l| l["embedding"].as_array().unwrap().iter().map(vec).collect())
        .collect();
    let texts: Vec<Vec<f64>> = lines[ex.len()..]
        .iter()
        .map(|l| vec(&l["embedding"]))
        .collect();
    // Unit vectors, 32 per image.
    assert!(images.iter().all(|q| q.len() == 32));
    for v in images.iter().flatten().chain(&texts) {
        assert!((dot(v, v) - 1.0).abs() < 1e-4);
    }
    // The documented score: the best query's dot product; the best text of each image.
    let top1: Vec<usize> = images
        .iter()
        .map(|queries| {
            let score = |t: &Vec<f64>| {
                queries
                    .iter()
                    .map(|q| dot(q, t))
                    .fold(f64::NEG_INFINITY, f64::max)
            };
            (0..texts.len())
                .max_by(|&a, &b| score(&texts[a]).total_cmp(&score(&texts[b])))
                .unwrap()
        })
        .collect();

    // `eval retrieval` on the same images and captions.
    let data = dir.path().join("data.json");
    let records: Vec<serde_json::Value> = ex
        .iter()
        .map(|(img, label)| serde_json::json!({"img": img, "prompt": "", "label": label}))
        .collect();
    std::fs::write(&data, serde_json::to_string(&records).unwrap()).unwrap();
    let report = dir.path().join("report.json");
    let out = bin()
        .args(["eval", "retrieval", "-m", "assets/shapes", "--data"])
        .arg(&data)
        .arg("--out")
        .arg(&report)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let want: Vec<usize> = r["tr_top1_per_image"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    assert_eq!(top1, want);
}

#[test]
fn a_model_without_itc_heads_is_a_clear_error() {
    let out = bin()
        .args(["embed", "--text", "a cat", "-m"])
        .arg(visualglm_testing::golden("checkpoints/hf"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("no ITC heads"), "{stderr}");
    let out = bin()
        .args(["embed", "-m", "assets/shapes"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing to embed"));
}
