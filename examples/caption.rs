//! Caption an image from your own crate: the whole library call, as the README shows it.
//!
//! ```text
//! cargo run --release --example caption -- IMAGE [MODEL] [QUESTION]
//! cargo run --release --example caption -- assets/shapes/examples/shapes-0.png
//! cargo run --release --example caption -- cat.jpg THUDM/visualglm-6b "这张图片里有什么？"
//! ```
//!
//! MODEL is a directory, a weights file or a hub id (default: `assets/shapes`, the small model
//! that ships with the repository). The answer follows the model's own defaults (its
//! `generation_config.json`, else the release's: Chinese, sampling); a second line answers in
//! English, greedily, whatever the model's defaults.

use visualglm::{load_image, Captioner, DType, Device, GenerationConfig, Question};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let Some(image) = args.next() else {
        eprintln!("usage: caption IMAGE [MODEL] [QUESTION]");
        std::process::exit(2);
    };
    let model = args.next().unwrap_or_else(|| "assets/shapes".into());
    let question = args.next();

    let captioner =
        Captioner::from_pretrained(&model, &Device::Cpu, DType::F32, &Default::default())?;
    let image = load_image(&image, &Default::default())?;

    // As the model answers by default (or the question given, with those settings).
    let answer = captioner.describe(&image, &captioner.defaults().question(question.clone()))?;
    println!("{answer}");

    // In English, greedily (`english: false` and `描述这张图片。` would be the Chinese template).
    let english = Question {
        query: Some(question.unwrap_or_else(|| "Describe the image.".into())),
        english: true,
        generation: GenerationConfig {
            max_new_tokens: 64,
            ..GenerationConfig::greedy()
        },
    };
    println!("{}", captioner.describe(&image, &english)?);
    Ok(())
}
