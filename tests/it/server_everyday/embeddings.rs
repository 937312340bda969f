//! `POST /v1/embeddings`: the shipped model's ITC heads over HTTP rank texts for each image
//! exactly as `visualglm eval retrieval` does; base64 carries the same floats; models without
//! heads, adapters, bad inputs and unsupported options are 400s.

use std::path::Path;
use std::sync::Arc;

use base64::Engine;
use serde_json::{json, Value};
use visualglm::itc::{ItcHeads, ITC_FILE};
use visualglm::pipeline::Captioner;

use super::helpers::{config, golden_captioner, start};

fn shapes() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/shapes")
}

fn data_url(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap();
    format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

#[test]
fn embeddings_rank_texts_as_eval_retrieval_does() {
    let c = Captioner::load(
        &shapes(),
        &candle_core::Device::Cpu,
        candle_core::DType::F32,
        &Default::default(),
    )
    .unwrap();
    let heads = ItcHeads::from_file(&shapes().join(ITC_FILE), &candle_core::Device::Cpu).unwrap();
    let client = start(
        &c,
        visualglm_server::ServerConfig {
            itc: Some(Arc::new(heads)),
            ..config()
        },
    );
    let ex: Value = serde_json::from_str(
        &std::fs::read_to_string(shapes().join("examples/examples.json")).unwrap(),
    )
    .unwrap();
    let ex = ex.as_array().unwrap();
    let mut inputs: Vec<Value> = ex
        .iter()
        .map(|e| {
            let path = shapes().join("examples").join(e["img"].as_str().unwrap());
            json!({"type": "image_url", "image_url": {"url": data_url(&path)}})
        })
        .collect();
    inputs.extend(ex.iter().map(|e| e["label"].clone()));
    let (status, body) = client.post("/v1/embeddings", &json!({"input": inputs}));
    assert_eq!(status, 200, "{body}");
    let data = body["data"].as_array().unwrap();
    assert_eq!(data.len(), 2 * ex.len());
    let images: Vec<Vec<Vec<f64>>> = data[..ex.len()]
        .iter()
        .map(|d| {
            d["embedding"]
                .as_array()
                .unwrap()
                .iter()
                .map(floats)
                .collect()
        })
        .collect();
    let texts: Vec<Vec<f64>> = data[ex.len()..]
        .iter()
        .map(|d| floats(&d["embedding"]))
        .collect();
    let dot = |a: &[f64], b: &[f64]| -> f64 { a.iter().zip(b).map(|(x, y)| x * y).sum() };
    let top1: Vec<usize> = images
        .iter()
        .map(|q| {
            let score = |t: &Vec<f64>| q.iter().map(|v| dot(v, t)).fold(f64::MIN, f64::max);
            (0..texts.len())
                .max_by(|&a, &b| score(&texts[a]).total_cmp(&score(&texts[b])))
                .unwrap()
        })
        .collect();

    // eval retrieval on the same images and captions.
    let dir = tempfile::tempdir().unwrap();
    let records: Vec<Value> = ex
        .iter()
        .map(|e| {
            let img = shapes().join("examples").join(e["img"].as_str().unwrap());
            json!({"img": img, "prompt": "", "label": e["label"]})
        })
        .collect();
    let data_file = dir.path().join("data.json");
    std::fs::write(&data_file, serde_json::to_string(&records).unwrap()).unwrap();
    let report = dir.path().join("report.json");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_visualglm"))
        .args(["eval", "retrieval", "-m"])
        .arg(shapes())
        .arg("--data")
        .arg(&data_file)
        .arg("--out")
        .arg(&report)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let want: Vec<usize> = r["tr_top1_per_image"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    assert_eq!(top1, want);

    // base64: the same floats as `float` for the same request, little-endian f32, row-major.
    let (_, plain) = client.post("/v1/embeddings", &json!({"input": [ex[0]["label"]]}));
    let (status, b64) = client.post(
        "/v1/embeddings",
        &json!({"input": [ex[0]["label"]], "encoding_format": "base64"}),
    );
    assert_eq!(status, 200, "{b64}");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64["data"][0]["embedding"].as_str().unwrap())
        .unwrap();
    let decoded: Vec<f32> = bytes
        .chunks(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let as_f32: Vec<f32> = floats(&plain["data"][0]["embedding"])
        .iter()
        .map(|&v| v as f32)
        .collect();
    assert_eq!(decoded, as_f32);
    // Alone or in a batch of texts with padding: the same embedding up to rounding.
    let alone = floats(&plain["data"][0]["embedding"]);
    assert!(alone
        .iter()
        .zip(&texts[0])
        .all(|(a, b)| (a - b).abs() < 1e-5));
    assert!(b64["usage"]["prompt_tokens"].as_u64().unwrap() > 0);

    for (body, param) in [
        (json!({"input": []}), "input"),
        (json!({"input": [{"type": "audio"}]}), "input"),
        (
            json!({"input": "x", "encoding_format": "int8"}),
            "encoding_format",
        ),
        (json!({"input": "x", "dimensions": 8}), "dimensions"),
    ] {
        let (status, err) = client.post("/v1/embeddings", &body);
        assert_eq!(status, 400, "{body}: {err}");
        assert_eq!(err["error"]["param"], param, "{err}");
    }
}

#[test]
fn a_model_without_heads_serves_no_embeddings() {
    let client = start(&golden_captioner(), config());
    let (status, err) = client.post("/v1/embeddings", &json!({"input": "a cat"}));
    assert_eq!(status, 400);
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("ITC heads"),
        "{err}"
    );
}
