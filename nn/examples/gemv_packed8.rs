//! Times the decode GEMV alone at ChatGLM-6B's shapes (one input row) for Q4_0 and Q8_0
//! weights, on GGML's row layout (our Q4_0 kernel, candle's Q8_0 one) and on the eight-row
//! packed layout, and the 300-row prefill product; prints the weight bytes read per
//! second and, with `--bandwidth GB/s`, the share of that bandwidth (prefill: GFLOP/s).
//! `cargo run --release -p visualglm-nn --example gemv_packed8 [-- --bandwidth 12.5]`
//! (`VISUALGLM_CPU` picks the path; rayon's pool the threads).

use std::time::Instant;

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::Module;
use candle_core::{Device, Result, Tensor};
use visualglm_nn::kernels::packed8::Packed8;
use visualglm_nn::kernels::{gemv_q4_0, isa};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let bandwidth = args
        .iter()
        .position(|a| a == "--bandwidth")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse::<f64>().ok());
    println!("path {}", isa::active());
    let dev = Device::Cpu;
    // (name, out, in): the GLM layer's four linears and lm_head.
    let shapes = [
        ("query_key_value", 12288, 4096),
        ("dense", 4096, 4096),
        ("dense_h_to_4h", 16384, 4096),
        ("dense_4h_to_h", 4096, 16384),
        ("lm_head", 150528, 4096),
    ];
    for (dtype, (name, n, k)) in [GgmlDType::Q4_0, GgmlDType::Q8_0]
        .into_iter()
        .flat_map(|d| shapes.map(|s| (d, s)))
    {
        let mut blocks = Vec::new();
        for r in (0..n).step_by(4096) {
            let rows = 4096.min(n - r);
            blocks.push(Tensor::rand(-0.02f32, 0.02, (rows, k), &dev)?);
        }
        let w = QTensor::quantize(&Tensor::cat(&blocks, 0)?, dtype)?;
        drop(blocks);
        // candle's own product over a copy of the GGML bytes (the Q8_0 baseline).
        let candle = QMatMul::from_qtensor(Packed8::pack(&w)?.to_qtensor()?)?;
        let x = Tensor::rand(-1f32, 1.0, (1, k), &dev)?;
        let packed = Packed8::pack(&w)?;
        let x300 = Tensor::rand(-1f32, 1.0, (300, k), &dev)?;
        let bytes = w.storage_size_in_bytes() as f64;
        let layouts: [(&str, &dyn Fn() -> Result<Tensor>); 4] = [
            ("ggml rows", &|| match dtype {
                GgmlDType::Q4_0 => gemv_q4_0::matmul(&w, &x),
                _ => candle.forward(&x),
            }),
            ("8-row packed", &|| packed.matmul(&x)),
            ("ggml rows prefill", &|| match dtype {
                GgmlDType::Q4_0 => visualglm_nn::kernels::gemm_q4_0::matmul(&w, &x300),
                _ => candle.forward(&x300),
            }),
            ("8-row packed prefill", &|| packed.matmul(&x300)),
        ];
        for (layout, product) in layouts {
            product()?;
            let mut best = f64::INFINITY;
            for _ in 0..if layout.ends_with("prefill") { 2 } else { 20 } {
                let t = Instant::now();
                product()?;
                best = best.min(t.elapsed().as_secs_f64());
            }
            if layout.ends_with("prefill") {
                // Bounded by arithmetic: multiply-adds per second, counted as 2 operations.
                let gflops = 2.0 * 300.0 * (n * k) as f64 / best / 1e9;
                println!(
                    "{dtype:?}\t{name}\t[{n}, {k}]\t{layout}\t{:.3} ms\t{gflops:.1} GFLOP/s",
                    best * 1e3
                );
                continue;
            }
            let gbs = bytes / best / 1e9;
            let share = bandwidth.map_or(String::new(), |b| format!("\t{:.0} %", 100.0 * gbs / b));
            println!(
                "{dtype:?}\t{name}\t[{n}, {k}]\t{layout}\t{:.3} ms\t{gbs:.2} GB/s{share}",
                best * 1e3
            );
        }
    }
    Ok(())
}
