//! Conversations: [`ChatSession`], a history of turns about any number of images, started
//! with [`Captioner::chat`].

use candle_core::Tensor;
use image::DynamicImage;
use visualglm_language::GenerationConfig;
use visualglm_tokenizer::DecodeOptions;

use crate::answer_text::{clean_answer, TextStream};
use crate::error::Result;
use crate::generate::{beam_search, generate, Flow};
use crate::pipeline::{Captioner, PromptOptions};

impl Captioner {
    /// Starts a chat; its images are encoded once and reused every turn.
    pub fn chat(&self, english: bool) -> ChatSession<'_> {
        ChatSession {
            captioner: self,
            image_embeds: Vec::new(),
            history: Vec::new(),
            english,
        }
    }
}

/// A conversation with history about any number of images (all of them, in the order they
/// were added, stand before the turns of every prompt).
#[derive(Debug)]
pub struct ChatSession<'a> {
    captioner: &'a Captioner,
    image_embeds: Vec<Tensor>,
    history: Vec<(String, String)>,
    english: bool,
}

impl ChatSession<'_> {
    /// Sets (or replaces) the images with this one and clears the history.
    pub fn set_image(&mut self, image: &DynamicImage) -> Result<()> {
        let embeds = self.captioner.encode_images(std::slice::from_ref(image))?;
        self.set_image_embeds(embeds);
        Ok(())
    }

    /// Uses precomputed `[1, 32, width]` image embeddings as the only image and clears the
    /// history.
    pub fn set_image_embeds(&mut self, embeds: Tensor) {
        self.image_embeds = vec![embeds];
        self.history.clear();
    }

    /// Adds an image after the ones already in the conversation (the history stays: the
    /// next question sees every image).
    pub fn add_image(&mut self, image: &DynamicImage) -> Result<()> {
        let embeds = self.captioner.encode_images(std::slice::from_ref(image))?;
        self.image_embeds.push(embeds);
        Ok(())
    }

    /// How many images the conversation holds.
    pub fn image_count(&self) -> usize {
        self.image_embeds.len()
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
        !self.image_embeds.is_empty()
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
            c.model()
                .length_limit(generation.max_length)
                .saturating_sub(1),
            &PromptOptions {
                english: self.english,
                images: self.image_embeds.len(),
                drop_oldest: true,
            },
        )?;
        self.history
            .drain(..prompt.dropped_turns.min(self.history.len()));
        let invalid = c.invalid_ids(self.english);
        let images = prompt.image_spans(&self.image_embeds)?;
        if generation.num_beams > 1 {
            let ids = beam_search(c.model(), &prompt.ids, &images, generation, &invalid)?;
            let answer = clean_answer(&c.tokenizer().decode(&ids, &DecodeOptions::default())?);
            // The search is over: a Stop changes nothing.
            let _ = on_text(&answer);
            self.history.push((query.to_string(), answer.clone()));
            return Ok(answer);
        }
        let mut stream = TextStream::default();
        let mut decode_error = None;
        let mut flow = Flow::Continue;
        let rows = generate(
            c.model(),
            &prompt.ids,
            &images,
            generation,
            &invalid,
            &mut |_, t| {
                if t != c.model().config().glm.eos_id() {
                    match stream.push(c.tokenizer(), t) {
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
        let answer = clean_answer(&c.tokenizer().decode(&ids, &DecodeOptions::default())?);
        self.history.push((query.to_string(), answer.clone()));
        Ok(answer)
    }
}
