//! Loading a [`VisualGlm`] from a file in any supported format: the released checkpoints
//! (through [`checkpoint::load`], checked against the configuration's parameters) or a GGUF
//! file written by this crate ([`crate::gguf::load_gguf`]). The model itself knows no file
//! format; this module picks one by the path.

use std::path::Path;

use candle_core::{DType, Device};

use crate::checkpoint::{self, LoadOptions};
use crate::error::{Result, VisualGlmError};
use crate::gguf::{is_gguf_path, load_gguf};
use crate::model::{BuildOptions, VisualGlm};
use crate::param_shapes::expected_parameters;

impl VisualGlm {
    /// Loads a checkpoint in any released form (see [`checkpoint::load`]) or a GGUF file,
    /// checks every tensor name and shape against the configuration, and builds the model on
    /// `device` in `dtype`; `opts` as [`LoadOptions`] says (`&Default::default()`: the defaults).
    pub fn load(path: &Path, device: &Device, dtype: DType, opts: &LoadOptions) -> Result<Self> {
        if device.is_cpu() && (dtype == DType::BF16 || opts.vision_dtype == Some(DType::BF16)) {
            return Err(VisualGlmError::Input(
                "bf16 is not supported on the CPU (candle has no CPU bf16 matmul): use f32 or f16"
                    .into(),
            ));
        }
        if is_gguf_path(path) {
            return load_gguf(path, device, dtype, opts).map_err(Into::into);
        }
        let ck = checkpoint::load(path, opts)?;
        let expected = expected_parameters(&ck.config)?;
        checkpoint::validate(&ck, &expected)?;
        let vb = ck.var_builder(dtype, device);
        let build = BuildOptions {
            vision_dtype: opts.vision_dtype,
        };
        Self::from_var_builder(&ck.config, vb, &build)
    }
}
