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
use visualglm_language::GenerationConfig;
use visualglm_tokenizer::{ChatGlmTokenizer, DecodeOptions};
use visualglm_vision::preprocess::ImagePreprocessor;

use crate::checkpoint::LoadOptions;
use crate::defaults::ModelDefaults;
use crate::error::{Result, VisualGlmError};
use crate::generate::{beam_search, generate, Flow};
use crate::image_cache::ImageCache;
use crate::model::VisualGlm;

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
    /// Make room for the image (`<img>`, the 32 placeholders, `</img>`).
    pub with_image: bool,
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
        if opts.with_image {
            builder = builder.image(self.model.config().image_length, self.tokenizer.pad_id());
        }
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

    /// Answers `question` for each row of precomputed image embeddings `[B, 32, width]`, with
    /// the prefill and decode timings.
    pub fn answer_embeds(&self, embeds: &Tensor, question: &Question) -> Result<Answers> {
        let mut timings = Timings::default();
        let cfg = &question.generation;
        let prompt = self.prompt(
            question.text(),
            &[],
            self.model.length_limit(cfg.max_length).saturating_sub(1),
            &PromptOptions {
                english: question.english,
                with_image: true,
                drop_oldest: false,
            },
        )?;
        let invalid = self.invalid_ids(question.english);
        let rows = if cfg.num_beams > 1 {
            let mut rows = Vec::new();
            for i in 0..embeds.dim(0)? {
                let one = embeds.narrow(0, i, 1)?;
                rows.push(beam_search(
                    &self.model,
                    &prompt.ids,
                    Some((&one, prompt.pre_image)),
                    cfg,
                    &invalid,
                )?);
            }
            rows
        } else {
            let start = Instant::now();
            let mut first_step: Option<Instant> = None;
            let mut steps = 0usize;
            let rows = generate(
                &self.model,
                &prompt.ids,
                Some((embeds, prompt.pre_image)),
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
                timings.prefill_tokens += prompt.ids.len() * embeds.dim(0)?;
                timings.prefill_ms += (first - start).as_secs_f64() * 1e3;
                timings.decode_tokens += steps.saturating_sub(1) * embeds.dim(0)?;
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

    /// Starts a chat; the image (if any) is encoded once and reused every turn.
    pub fn chat(&self, english: bool) -> ChatSession<'_> {
        ChatSession {
            captioner: self,
            image_embeds: None,
            history: Vec::new(),
            english,
        }
    }
}

/// A conversation with history about at most one image.
#[derive(Debug)]
pub struct ChatSession<'a> {
    captioner: &'a Captioner,
    image_embeds: Option<Tensor>,
    history: Vec<(String, String)>,
    english: bool,
}

impl ChatSession<'_> {
    /// Sets (or replaces) the image and clears the history.
    pub fn set_image(&mut self, image: &DynamicImage) -> Result<()> {
        self.image_embeds = Some(self.captioner.encode_images(std::slice::from_ref(image))?);
        self.history.clear();
        Ok(())
    }

    /// Uses precomputed `[1, 32, width]` image embeddings and clears the history.
    pub fn set_image_embeds(&mut self, embeds: Tensor) {
        self.image_embeds = Some(embeds);
        self.history.clear();
    }

    /// Forgets the history (keeps the image).
    pub fn clear_history(&mut self) {
        self.history.clear();
    }

    /// The turns so far: (question, answer).
    pub fn history(&self) -> &[(String, String)] {
        &self.history
    }

    /// Whether an image is loaded.
    pub fn has_image(&self) -> bool {
        self.image_embeds.is_some()
    }

    /// Asks a question; `on_text` receives the answer piece by piece as it is generated
    /// (with `num_beams > 1`, beam search, whole once the search ends) and returns
    /// [`Flow::Stop`] to end the answer there: the answer so far is returned and kept in the
    /// history. The oldest turns are dropped when the history no longer fits `max_length`.
    pub fn ask(
        &mut self,
        query: &str,
        generation: &GenerationConfig,
        on_text: &mut dyn FnMut(&str) -> Flow,
    ) -> Result<String> {
        let c = self.captioner;
        let prompt = c.prompt(
            query,
            &self.history,
            c.model
                .length_limit(generation.max_length)
                .saturating_sub(1),
            &PromptOptions {
                english: self.english,
                with_image: self.image_embeds.is_some(),
                drop_oldest: true,
            },
        )?;
        self.history
            .drain(..prompt.dropped_turns.min(self.history.len()));
        let invalid = c.invalid_ids(self.english);
        let image = self.image_embeds.as_ref().map(|e| (e, prompt.pre_image));
        if generation.num_beams > 1 {
            let ids = beam_search(&c.model, &prompt.ids, image, generation, &invalid)?;
            let answer = clean_answer(&c.tokenizer.decode(&ids, &DecodeOptions::default())?);
            // The search is over: a Stop changes nothing.
            let _ = on_text(&answer);
            self.history.push((query.to_string(), answer.clone()));
            return Ok(answer);
        }
        let mut stream = TextStream::default();
        let mut decode_error = None;
        let mut flow = Flow::Continue;
        let rows = generate(
            &c.model,
            &prompt.ids,
            image,
            generation,
            &invalid,
            &mut |_, t| {
                if t != c.model.config().glm.eos_id() {
                    match stream.push(&c.tokenizer, t) {
                        Ok(piece) if !piece.is_empty() => flow = on_text(&piece),
                        Ok(_) => {}
                        Err(e) => decode_error = Some(e),
                    }
                }
                flow
            },
        )?;
        if let Some(e) = decode_error {
            return Err(e);
        }
        let ids = rows.into_iter().next().unwrap_or_default();
        let answer = clean_answer(&c.tokenizer.decode(&ids, &DecodeOptions::default())?);
        self.history.push((query.to_string(), answer.clone()));
        Ok(answer)
    }
}

/// Turns streamed ids into text pieces, holding back incomplete UTF-8 sequences.
#[derive(Debug, Default)]
pub struct TextStream {
    ids: Vec<u32>,
    emitted: usize,
}

impl TextStream {
    /// Adds one id and returns the new text it completes (possibly empty).
    pub fn push(&mut self, tokenizer: &ChatGlmTokenizer, id: u32) -> Result<String> {
        self.ids.push(id);
        let text = tokenizer.decode(&self.ids, &DecodeOptions::default())?;
        if text.ends_with('\u{FFFD}') || text.len() < self.emitted {
            return Ok(String::new());
        }
        let new = text.get(self.emitted..).unwrap_or("").to_string();
        self.emitted = text.len();
        Ok(new)
    }
}

/// The release strips the answer (it also cuts the whole text at the last `答：`/`A:`, which
/// only matters for its own prompt+answer decoding; we decode the answer alone).
fn clean_answer(text: &str) -> String {
    // A token budget can end inside a multi-byte character: drop the incomplete tail.
    text.trim()
        .trim_end_matches('\u{FFFD}')
        .trim_end()
        .to_string()
}
