//! The four networks of VisualGLM (EVA ViT, Q-Former, `glm_proj`, ChatGLM) built from one
//! `VarBuilder` by their canonical (HF) names: what [`VisualGlm`](crate::model::VisualGlm)
//! runs and what [`expected_parameters`](crate::param_shapes::expected_parameters) records.

use candle_core::DType;
use candle_nn::VarBuilder;
use visualglm_language::ChatGlm;
use visualglm_nn::Linear;
use visualglm_qformer::{load_glm_proj, QFormer};
use visualglm_vision::EvaVit;

use crate::config::VisualGlmConfig;
use crate::error::Result;

/// HF name prefix of the image encoder.
const IMAGE_ENCODER: &str = "image_encoder";

/// The networks of the model, unassembled.
pub(crate) struct Parts {
    /// The EVA ViT (`image_encoder.vit.*`).
    pub(crate) vit: EvaVit,
    /// The Q-Former (`image_encoder.qformer.*`).
    pub(crate) qformer: QFormer,
    /// The projection into ChatGLM's width (`image_encoder.glm_proj.*`).
    pub(crate) glm_proj: Linear,
    /// The language model (`transformer.*`, `lm_head.weight`).
    pub(crate) glm: ChatGlm,
}

impl Parts {
    /// Loads the image encoder in `vision_dtype` and the language model in `vb`'s dtype, in
    /// that order (ViT, Q-Former, `glm_proj`, ChatGLM).
    pub(crate) fn load(
        config: &VisualGlmConfig,
        vb: VarBuilder,
        vision_dtype: DType,
    ) -> Result<Self> {
        let ivb = vb.clone().set_dtype(vision_dtype).pp(IMAGE_ENCODER);
        let vit = EvaVit::load(&config.vision, ivb.pp("vit"))?;
        let qformer = QFormer::load(&config.qformer, ivb.pp("qformer"))?;
        let glm_proj = load_glm_proj(
            config.qformer.hidden_size,
            config.glm.hidden_size,
            ivb.pp("glm_proj"),
        )?;
        let glm = ChatGlm::load(&config.glm, vb)?;
        Ok(Self {
            vit,
            qformer,
            glm_proj,
            glm,
        })
    }
}
