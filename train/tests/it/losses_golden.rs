//! The losses against `shared/golden/losses/` (values and gradients).

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor, Var};
use visualglm_testing::max_abs_diff;
use visualglm_train::labels::{build_labeled_ids, LabelConfig, SpecialIds, IGNORE_INDEX};
use visualglm_train::losses::{
    ar_loss, itc_loss, itc_loss_normalized, l2_normalize, ItcConfig, ItcTargets, Temperature,
    NORMALIZE_EPS,
};

const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/golden");

fn load(name: &str) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(format!("{GOLDEN}/losses/{name}"), &Device::Cpu)
        .unwrap_or_else(|e| panic!("cannot read fixture {name}: {e}"))
}

fn scalar(t: &Tensor) -> f32 {
    t.to_dtype(DType::F32).unwrap().to_scalar::<f32>().unwrap()
}

fn meta(name: &str) -> HashMap<String, String> {
    let bytes = std::fs::read(format!("{GOLDEN}/losses/{name}")).unwrap();
    let (_, m) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    m.metadata().clone().unwrap_or_default()
}

#[test]
fn ar_loss_value_count_and_gradient_match() {
    let g = load("ar.safetensors");
    let logits = Var::from_tensor(&g["logits"]).unwrap();
    let out = ar_loss(logits.as_tensor(), &g["labels"]).unwrap();
    let n_ref = g["n_supervised"].to_scalar::<i64>().unwrap();
    assert_eq!(out.n_supervised as i64, n_ref);
    let loss = out.mean().unwrap();
    let diff = (scalar(&loss) - scalar(&g["loss"])).abs();
    assert!(diff <= 1e-5, "loss differs by {diff}");
    let grads = loss.backward().unwrap();
    let grad = grads
        .get(logits.as_tensor())
        .expect("logits got no gradient");
    let d = max_abs_diff(grad, &g["grad_logits"]);
    assert!(d <= 1e-6, "grad_logits differ by {d}");
}

#[test]
fn ar_labels_are_rebuilt_from_the_fixture_ids() {
    // ar.safetensors documents: input_ids = a + [gMASK, <sop>] + b + [<eop>], right-padded,
    // labels = -100 before <sop>, pads (and pad-id answer tokens) -100.
    let g = load("ar.safetensors");
    let m = meta("ar.safetensors");
    let id = |k: &str| m[k].parse::<u32>().unwrap();
    let sp = SpecialIds {
        gmask: id("gmask"),
        sop: id("sop"),
        eop: id("eop"),
        pad: id("pad"),
    };
    let ids: Vec<Vec<i64>> = g["input_ids"].to_vec2().unwrap();
    let labels: Vec<Vec<i64>> = g["labels"].to_vec2().unwrap();
    let t = ids[0].len();
    // Budgets that make every row fit untruncated into exactly T tokens.
    let longest_a = ids
        .iter()
        .map(|r| r.iter().position(|&x| x == i64::from(sp.gmask)).unwrap())
        .max()
        .unwrap();
    let cfg = LabelConfig {
        max_source_length: longest_a + 1,
        max_target_length: t - (longest_a + 1),
        mask_pad_id_in_answer: true,
    };
    let mut saw_masked_answer_pad = false;
    for (row, lab) in ids.iter().zip(&labels) {
        let g_at = row.iter().position(|&x| x == i64::from(sp.gmask)).unwrap();
        let e_at = row.iter().position(|&x| x == i64::from(sp.eop)).unwrap();
        let a: Vec<u32> = row[..g_at].iter().map(|&x| x as u32).collect();
        let b: Vec<u32> = row[g_at + 2..e_at].iter().map(|&x| x as u32).collect();
        saw_masked_answer_pad |= b.contains(&sp.pad);
        let built = build_labeled_ids(&a, &b, &sp, &cfg).unwrap();
        let built_ids: Vec<i64> = built.input_ids.iter().map(|&x| i64::from(x)).collect();
        assert_eq!(&built_ids, row);
        assert_eq!(&built.labels, lab);
        assert_eq!(built.context_len, g_at + 1);
    }
    assert!(
        saw_masked_answer_pad,
        "the fixture's pad-in-answer quirk was not exercised"
    );
    // The shifted labels of the fixture are labels[:, 1:].
    let shift: Vec<Vec<i64>> = g["shift_labels"].to_vec2().unwrap();
    for (s, l) in shift.iter().zip(&labels) {
        assert_eq!(s.as_slice(), &l[1..]);
    }
    assert!(labels.iter().flatten().any(|&x| x == IGNORE_INDEX));
}

fn check_itc(prefix: &str, targets: ItcTargets<'_>) {
    let g = load("itc.safetensors");
    let get = |k: &str| g[&format!("{prefix}{k}")].clone();
    let cfg = ItcConfig::default();
    let reference = scalar(&get("loss"));
    let loss_ok = |loss: &Tensor| {
        let diff = (scalar(loss) - reference).abs();
        assert!(
            diff <= 1e-5 + 1e-5 * reference.abs(),
            "{prefix}loss differs by {diff}"
        );
    };

    // 1. From the normalised features (leaf variables): loss, sims, feature and temp grads.
    let image_feats = Var::from_tensor(&get("image_feats")).unwrap();
    let text_feat = Var::from_tensor(&get("text_feat")).unwrap();
    let temp = Temperature::new(f64::from(scalar(&get("temp"))), &Device::Cpu).unwrap();
    let out = itc_loss_normalized(
        image_feats.as_tensor(),
        text_feat.as_tensor(),
        temp.tensor(),
        targets,
        &cfg,
    )
    .unwrap();
    loss_ok(&out.loss);
    assert!(max_abs_diff(&out.sim_i2t, &get("sim_i2t")) <= 1e-4);
    assert!(max_abs_diff(&out.sim_t2i, &get("sim_t2i")) <= 1e-4);
    let grads = out.loss.backward().unwrap();
    for (t, name) in [
        (image_feats.as_tensor(), "grad_image_feats"),
        (text_feat.as_tensor(), "grad_text_feat"),
        (temp.tensor(), "grad_temp"),
    ] {
        let grad = grads
            .get(t)
            .unwrap_or_else(|| panic!("no gradient for {name}"));
        let d = max_abs_diff(grad, &get(name));
        assert!(d <= 1e-4, "{prefix}{name} differs by {d}");
    }

    // 2. From the raw projections, normalising inside: loss and raw grads.
    let image_raw = Var::from_tensor(&get("image_proj_raw")).unwrap();
    let text_raw = Var::from_tensor(&get("text_proj_raw")).unwrap();
    let normed = l2_normalize(image_raw.as_tensor(), NORMALIZE_EPS).unwrap();
    assert!(max_abs_diff(&normed, &get("image_feats")) <= 1e-6);
    let normed = l2_normalize(text_raw.as_tensor(), NORMALIZE_EPS).unwrap();
    assert!(max_abs_diff(&normed, &get("text_feat")) <= 1e-6);
    let out = itc_loss(
        image_raw.as_tensor(),
        text_raw.as_tensor(),
        temp.tensor(),
        targets,
        &cfg,
    )
    .unwrap();
    loss_ok(&out.loss);
    let grads = out.loss.backward().unwrap();
    for (t, name) in [
        (image_raw.as_tensor(), "grad_image_proj_raw"),
        (text_raw.as_tensor(), "grad_text_proj_raw"),
        (temp.tensor(), "grad_temp"),
    ] {
        let grad = grads
            .get(t)
            .unwrap_or_else(|| panic!("no gradient for {name}"));
        let d = max_abs_diff(grad, &get(name));
        assert!(d <= 1e-4, "{prefix}{name} differs by {d}");
    }
}

#[test]
fn itc_in_batch_matches_lavis() {
    check_itc("", ItcTargets::InBatch);
}

#[test]
fn itc_image_id_soft_targets_match_lavis() {
    let g = load("itc.safetensors");
    let ids: Vec<i64> = g["imageid_image_ids"].to_vec1().unwrap();
    check_itc("imageid_", ItcTargets::ImageIds(&ids));
}
