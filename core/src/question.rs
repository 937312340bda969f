//! One question about an image and how to answer it; a model's defaults as a question.

use serde::{Deserialize, Serialize};
use visualglm_language::GenerationConfig;

use crate::defaults::ModelDefaults;

/// The release's default first question in Chinese mode.
pub const DEFAULT_QUERY_ZH: &str = "描述这张图片。";
/// The release's default first question in English mode.
pub const DEFAULT_QUERY_EN: &str = "Describe the image.";

/// One question about an image, with how to answer it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Question {
    /// The question; `None` asks the release's describe-this-image question.
    pub query: Option<String>,
    /// Use the English template (`Q:…\nA:`) and suppress Chinese tokens, as `--english` does.
    pub english: bool,
    /// Decoding settings.
    pub generation: GenerationConfig,
}

impl Question {
    /// The question text, or the default one for the language.
    pub fn text(&self) -> &str {
        match &self.query {
            Some(q) => q,
            None if self.english => DEFAULT_QUERY_EN,
            None => DEFAULT_QUERY_ZH,
        }
    }
}

impl ModelDefaults {
    /// A question with these defaults: `query`, or the model's own question.
    pub fn question(&self, query: Option<String>) -> Question {
        Question {
            query: query.or_else(|| self.question.clone()),
            english: self.english,
            generation: self.generation.clone(),
        }
    }
}
