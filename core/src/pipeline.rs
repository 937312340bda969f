//! The captioning and chat API: a loaded model with its tokenizer and image preprocessor.
//!
//! ```
//! # fn main() -> visualglm::Result<()> {
//! use candle_core::{DType, Device};
//! use visualglm::generate::Flow;
//! use visualglm::pipeline::{Captioner, CaptionerOptions, Question};
//! use visualglm_language::GenerationConfig;
//! use visualglm_vision::decode::load_image;
//! # let golden = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/golden");
//! # let tokenizer = concat!(env!("CARGO_MANIFEST_DIR"), "/../assets/tiny/tokenizer.model");
//! // The tiny random test model; for the release use `Captioner::load("visualglm-6b", ..)`.
//! let model = format!("{golden}/checkpoints/hf");
//! let opts = CaptionerOptions { tokenizer: Some(tokenizer.into()), ..Default::default() };
//! let captioner = Captioner::load(model.as_ref(), &Device::Cpu, DType::F32, &opts)?;
//! let image = load_image(format!("{golden}/images/chelsea.png"), &Default::default())?;
//! let question = Question {
//!     generation: GenerationConfig { max_new_tokens: 8, ..GenerationConfig::greedy() },
//!     ..Question::default()
//! };
//! let caption = captioner.describe(&image, &question)?;
//! let batch = captioner.describe_batch(&[image.clone(), image.clone()], &question)?;
//! assert_eq!(batch.answers[0], caption);
//! println!("{}", batch.timings.summary());
//!
//! let mut chat = captioner.chat(false);
//! chat.set_image(&image)?;
//! let answer = chat.ask("这是什么？", &question.generation, &mut |piece| {
//!     print!("{piece}");
//!     Flow::Continue // Flow::Stop ends the answer here
//! })?;
//! assert_eq!(chat.history().len(), 1);
//! # let _ = answer;
//! # Ok(()) }
//! ```

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use image::DynamicImage;
use serde::Serialize;
use visualglm_language::prompt::{Overflow, PromptBuilder, PromptInputs, Template};
use visualglm_language::EmbedSpan;
use visualglm_tokenizer::{ChatGlmTokenizer, DecodeOptions};
use visualglm_vision::preprocess::ImagePreprocessor;

use crate::answer_text::clean_answer;
use crate::checkpoint::LoadOptions;
use crate::defaults::ModelDefaults;
use crate::error::{Result, VisualGlmError};
use crate::generate::{beam_search, generate, Flow};
use crate::image_cache::ImageCache;
use crate::model::VisualGlm;

pub use crate::answer_text::TextStream;
pub use crate::question::{Question, DEFAULT_QUERY_EN, DEFAULT_QUERY_ZH};
pub use crate::timings::Timings;

/// Options of [`Captioner::load`].
#[derive(Debug, Clone, Default)]
pub struct CaptionerOptions {
    /// How to read the checkpoint and build the model.
    pub checkpoint: LoadOptions,
    /// The tokenizer (a `.model`/`.json` file or a directory); `None`: the one beside the
    /// checkpoint.
    pub tokenizer: Option<PathBuf>,
    /// Quantize the language model while loading (see [`VisualGlm::load_quantized`]).
    pub quantize: Option<(
        candle_core::quantized::GgmlDType,
        crate::quantize::QuantizeOptions,
    )>,
}

/// Options of [`Captioner::prompt`]; the default is the Chinese template, no image, and an
/// error when the prompt does not fit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PromptOptions {
    /// Use the English template (`Q:…\nA:`) instead of the Chinese one.
    pub english: bool,
    /// How many image blocks (`<img>`, the 32 placeholders, `</img>`) to make room for, one
    /// after another before the turns (0: a text-only prompt).
    pub images: usize,
    /// Drop the oldest history turns until the prompt fits (`dropped_turns` says how many)
    /// instead of failing.
    pub drop_oldest: bool,
}

/// What [`Captioner::describe_batch`] and [`Captioner::answer_embeds`] return.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Answers {
    /// One answer per image, in order.
    pub answers: Vec<String>,
    /// Where the time of this call went.
    pub timings: Timings,
}

/// A loaded VisualGLM ready to describe images and chat.
#[derive(Debug, Clone)]
pub struct Captioner {
    model: VisualGlm,
    tokenizer: ChatGlmTokenizer,
    preprocessor: ImagePreprocessor,
    defaults: ModelDefaults,
    /// Who encodes this captioner's images (see [`crate::image_cache`]).
    encoder_id: [u8; 16],
    image_cache: Option<Arc<ImageCache>>,
}

impl Captioner {
    /// Loads the checkpoint at `path` (see [`VisualGlm::load`], or
    /// [`VisualGlm::load_quantized`] with `opts.quantize`), its tokenizer, by default the
    /// one beside the checkpoint, and its decoding defaults (`generation_config.json` beside
    /// it, else the release's; see [`crate::defaults`]).
    pub fn load(
        path: &Path,
        device: &Device,
        dtype: DType,
        opts: &CaptionerOptions,
    ) -> Result<Self> {
        let defaults = ModelDefaults::for_model(path)?;
        let model = match &opts.quantize {
            None => VisualGlm::load(path, device, dtype, &opts.checkpoint)?,
            Some((q, qopts)) => {
                let (model, report) =
                    VisualGlm::load_quantized(path, device, dtype, &opts.checkpoint, *q, qopts)?;
                tracing::info!("quantized GLM weights: {}", report.summary());
                model
            }
        };
        let tokenizer = match &opts.tokenizer {
            Some(t) => ChatGlmTokenizer::from_path(t)?,
            None => ChatGlmTokenizer::from_dir(crate::model_dir::folder_of(path))?,
        };
        Ok(Self::new(model, tokenizer)?.with_defaults(defaults))
    }

    /// Loads a model named as users name it: a local directory or weights file (a training
    /// run directory means its exported `model/`), or, with the `hub` feature, a Hugging Face
    /// hub id such as `THUDM/visualglm-6b`, downloaded once into the hub cache
    /// (`HF_HUB_OFFLINE=1`: use the cache only). Then as [`Captioner::load`].
    pub fn from_pretrained(
        model: &str,
        device: &Device,
        dtype: DType,
        opts: &CaptionerOptions,
    ) -> Result<Self> {
        #[cfg(feature = "hub")]
        let path = crate::hub::resolve_model(model, crate::hub::offline_from_env())
            .map_err(|e| VisualGlmError::Hub(Box::new(e)))?;
        #[cfg(not(feature = "hub"))]
        let path = {
            let path = Path::new(model);
            if !path.exists() {
                return Err(VisualGlmError::Input(format!(
                    "model `{model}` not found (hub ids need the `hub` feature)"
                )));
            }
            crate::model_dir::model_of_run(path)
                .map_err(|e| VisualGlmError::ModelDir(Box::new(e)))?
        };
        Self::load(&path, device, dtype, opts)
    }

    /// Pairs a model with a tokenizer, checking that their special ids agree.
    pub fn new(model: VisualGlm, tokenizer: ChatGlmTokenizer) -> Result<Self> {
        let g = &model.config().glm;
        let s = tokenizer.special_ids();
        let pairs = [
            ("[gMASK]", g.gmask_token_id, s.gmask),
            ("<sop>", g.bos_token_id, s.sop),
            ("<eop>", g.eos_id(), s.eop),
        ];
        for (name, model_id, tok_id) in pairs {
            if model_id != tok_id {
                return Err(VisualGlmError::Input(format!(
                    "the tokenizer ({}) has {name} = {tok_id} but the model expects {model_id}: \
                     use the tokenizer that belongs to this model",
                    tokenizer.source().display()
                )));
            }
        }
        if tokenizer.num_pieces() > g.vocab_size {
            return Err(VisualGlmError::Input(format!(
                "the tokenizer has {} pieces but the model only {} embedding rows",
                tokenizer.num_pieces(),
                g.vocab_size
            )));
        }
        let preprocessor = model.image_preprocessor();
        Ok(Self {
            model,
            tokenizer,
            preprocessor,
            defaults: ModelDefaults::default(),
            encoder_id: crate::image_cache::new_encoder_id(),
            image_cache: None,
        })
    }

    /// Keeps encoded images in `cache` (shared with whoever else holds it) from now on;
    /// `None`: encode every image.
    pub fn set_image_cache(&mut self, cache: Option<Arc<ImageCache>>) {
        self.image_cache = cache;
    }

    /// The image cache, if any.
    pub fn image_cache(&self) -> Option<&Arc<ImageCache>> {
        self.image_cache.as_ref()
    }

    /// This captioner answering with `defaults` when a caller chooses nothing.
    pub fn with_defaults(mut self, defaults: ModelDefaults) -> Self {
        self.defaults = defaults;
        self
    }

    /// The model's decoding defaults (its `generation_config.json`, else the release's).
    pub fn defaults(&self) -> &ModelDefaults {
        &self.defaults
    }

    /// The model.
    pub fn model(&self) -> &VisualGlm {
        &self.model
    }

    /// This captioner with `adapters` attached unmerged (on top of any it already carries): a
    /// clone sharing the base weights, so it costs only the adapters' memory.
    pub fn with_adapters(
        &self,
        adapters: &crate::lora::LoraAdapters,
    ) -> std::result::Result<Self, crate::lora::LoraError> {
        let mut model = self.model.clone();
        model.attach_lora(adapters)?;
        let mut adapted =
            Self::new(model, self.tokenizer.clone())?.with_defaults(self.defaults.clone());
        // Unmerged adapters sit on the language model only: the images encode as before.
        adapted.encoder_id = self.encoder_id;
        adapted.image_cache = self.image_cache.clone();
        Ok(adapted)
    }

    /// Quantizes the language model's linear weights to `dtype` (see
    /// [`VisualGlm::quantize_language`]); the image encoder stays in the run dtype.
    pub fn quantize_language(
        &mut self,
        dtype: candle_core::quantized::GgmlDType,
        opts: &crate::quantize::QuantizeOptions,
    ) -> Result<crate::quantize::QuantizeReport> {
        self.model.quantize_language(dtype, opts)
    }

    /// Stores the language model's KV caches in `dtype` from now on (`None`: the run dtype);
    /// see [`visualglm_language::ChatGlm::set_kv_cache_dtype`].
    pub fn set_kv_cache_dtype(&mut self, dtype: Option<candle_core::DType>) {
        self.model.language_model_mut().set_kv_cache_dtype(dtype);
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &ChatGlmTokenizer {
        &self.tokenizer
    }

    /// The image preprocessor.
    pub fn preprocessor(&self) -> &ImagePreprocessor {
        &self.preprocessor
    }

    /// The 32 image embeddings `[B, 32, width]` of a batch of images.
    pub fn encode_images(&self, images: &[DynamicImage]) -> Result<Tensor> {
        match &self.image_cache {
            None => {
                let pixels = self
                    .preprocessor
                    .preprocess_batch(images, self.model.device())?;
                self.model.encode_image(&pixels)
            }
            Some(cache) => crate::image_cache::encode_cached(
                cache,
                &self.encoder_id,
                &self.preprocessor,
                images,
                |pixels| self.model.encode_image(pixels),
                self.model.device(),
            ),
        }
    }

    /// Ids the sampler must never pick: ids without a piece, plus the Chinese block in
    /// English mode.
    pub fn invalid_ids(&self, english: bool) -> Vec<Range<usize>> {
        let no_piece = self.tokenizer.num_pieces()..self.model.config().glm.vocab_size;
        let mut ranges = Vec::from([no_piece]);
        if english {
            ranges.extend(
                self.tokenizer
                    .english_suppressed_ranges()
                    .into_iter()
                    .map(|r| r.start as usize..r.end as usize),
            );
        }
        ranges
    }

    /// Builds the prompt for `query` after `history`, at most `max_length` tokens, with an
    /// image or not, as `opts` says.
    pub fn prompt(
        &self,
        query: &str,
        history: &[(String, String)],
        max_length: usize,
        opts: &PromptOptions,
    ) -> Result<PromptInputs> {
        let template = if opts.english {
            Template::English
        } else {
            Template::Chinese
        };
        let mut builder = PromptBuilder::new(&self.tokenizer)
            .template(template)
            .max_length(max_length)
            .overflow(if opts.drop_oldest {
                Overflow::DropOldestTurns
            } else {
                Overflow::Error
            });
        builder = builder.images(
            opts.images,
            self.model.config().image_length,
            self.tokenizer.pad_id(),
        );
        Ok(builder.build(query, history)?)
    }

    /// Describes one image (or answers `question` about it).
    pub fn describe(&self, image: &DynamicImage, question: &Question) -> Result<String> {
        let mut out = self.describe_batch(std::slice::from_ref(image), question)?;
        out.answers
            .pop()
            .ok_or_else(|| VisualGlmError::Input("no answer produced".into()))
    }

    /// Describes many images with one question: the images are encoded together and the
    /// answers decoded together (greedy or sampled; with beams, one image after another).
    /// The answers come with how long each phase took.
    pub fn describe_batch(&self, images: &[DynamicImage], question: &Question) -> Result<Answers> {
        if images.is_empty() {
            return Ok(Answers::default());
        }
        let start = Instant::now();
        let embeds = self.encode_images(images)?;
        let encode_ms = start.elapsed().as_secs_f64() * 1e3;
        let mut out = self.answer_embeds(&embeds, question)?;
        out.timings.encode_ms += encode_ms;
        out.timings.images += images.len();
        Ok(out)
    }

    /// Answers `question` about several images together, in one prompt (one `<img>` block
    /// per image, in order; see [`visualglm_language::prompt`]). The released weights saw one
    /// image per prompt: answers about several are as good as the fine-tuning on such prompts.
    pub fn describe_together(
        &self,
        images: &[DynamicImage],
        question: &Question,
    ) -> Result<Answers> {
        if images.is_empty() {
            return Err(VisualGlmError::Input(
                "describe_together needs at least one image".into(),
            ));
        }
        let start = Instant::now();
        let embeds = self.encode_images(images)?;
        let encode_ms = start.elapsed().as_secs_f64() * 1e3;
        let per_image = (0..images.len())
            .map(|i| embeds.narrow(0, i, 1))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let mut out = self.answer_image_set(&per_image, question)?;
        out.timings.encode_ms += encode_ms;
        out.timings.images += images.len();
        Ok(out)
    }

    /// Answers `question` for each row of precomputed image embeddings `[B, 32, width]`, with
    /// the prefill and decode timings.
    pub fn answer_embeds(&self, embeds: &Tensor, question: &Question) -> Result<Answers> {
        self.answer_image_set(std::slice::from_ref(embeds), question)
    }

    /// Answers `question` about a set of images for each of `B` rows: `images[i]` `[B, 32,
    /// width]` fills image block `i` of the prompt (one block per entry, none for text alone).
    /// Returns `B` answers with the prefill and decode timings.
    pub fn answer_image_set(&self, images: &[Tensor], question: &Question) -> Result<Answers> {
        let mut timings = Timings::default();
        let cfg = &question.generation;
        let prompt = self.prompt(
            question.text(),
            &[],
            self.model.length_limit(cfg.max_length).saturating_sub(1),
            &PromptOptions {
                english: question.english,
                images: images.len(),
                drop_oldest: false,
            },
        )?;
        let spans = prompt.image_spans(images)?;
        let rows_in = match images.first() {
            Some(t) => t.dim(0)?,
            None => 1,
        };
        let invalid = self.invalid_ids(question.english);
        let rows = if cfg.num_beams > 1 {
            let mut rows = Vec::new();
            for i in 0..rows_in {
                let one = EmbedSpan::row(&spans, i)?;
                rows.push(beam_search(&self.model, &prompt.ids, &one, cfg, &invalid)?);
            }
            rows
        } else {
            let start = Instant::now();
            let mut first_step: Option<Instant> = None;
            let mut steps = 0usize;
            let rows = generate(
                &self.model,
                &prompt.ids,
                &spans,
                cfg,
                &invalid,
                &mut |row, _| {
                    if row == 0 {
                        steps += 1;
                        first_step.get_or_insert_with(Instant::now);
                    }
                    Flow::Continue
                },
            )?;
            if let Some(first) = first_step {
                timings.prefill_tokens += prompt.ids.len() * rows_in;
                timings.prefill_ms += (first - start).as_secs_f64() * 1e3;
                timings.decode_tokens += steps.saturating_sub(1) * rows_in;
                timings.decode_ms += first.elapsed().as_secs_f64() * 1e3;
            }
            rows
        };
        let answers = rows
            .iter()
            .map(|ids| {
                Ok(clean_answer(
                    &self.tokenizer.decode(ids, &DecodeOptions::default())?,
                ))
            })
            .collect::<Result<_>>()?;
        Ok(Answers { answers, timings })
    }
}
