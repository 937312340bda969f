//! Loading a [`VisualGlm`] from a file in any supported format: the released checkpoints
//! (through [`checkpoint::load`], checked against the configuration's parameters) or a GGUF
//! file written by this crate ([`crate::gguf::load_gguf`]). The model itself knows no file
//! format; this module picks one by the path. Released checkpoints are read one tensor at a
//! time ([`crate::streamed`]), converted or quantized as they are read.

use std::path::Path;

use candle_core::quantized::GgmlDType;
use candle_core::{DType, Device};

use crate::checkpoint::{self, LoadOptions};
use crate::error::{Result, VisualGlmError};
use crate::gguf::{is_gguf_path, load_gguf};
use crate::model::{BuildOptions, VisualGlm};
use crate::param_shapes::expected_parameters;
use crate::quantize::{QuantizeOptions, QuantizeReport};
use crate::streamed::build_streamed;

impl VisualGlm {
    /// Loads a checkpoint in any released form (see [`checkpoint::load`]) or a GGUF file,
    /// checks every tensor name and shape against the configuration, and builds the model on
    /// `device` in `dtype`, reading and converting one tensor at a time; `opts` as
    /// [`LoadOptions`] says (`&Default::default()`: the defaults).
    pub fn load(path: &Path, device: &Device, dtype: DType, opts: &LoadOptions) -> Result<Self> {
        Self::load_as(path, device, dtype, opts, None)
    }

    /// [`VisualGlm::load`], quantizing the language model as
    /// [`VisualGlm::quantize_language`] does. Each weight to quantize is quantized as it is
    /// read, so the peak memory is the quantized model plus one tensor, not the model in
    /// `dtype` first (a GGUF file is loaded as stored, then quantized if it is not yet).
    pub fn load_quantized(
        path: &Path,
        device: &Device,
        dtype: DType,
        opts: &LoadOptions,
        quantize: GgmlDType,
        quantize_opts: &QuantizeOptions,
    ) -> Result<(Self, QuantizeReport)> {
        let mut model = Self::load_as(path, device, dtype, opts, Some((quantize, *quantize_opts)))?;
        let report = model.quantize_language(quantize, quantize_opts)?;
        Ok((model, report))
    }

    fn load_as(
        path: &Path,
        device: &Device,
        dtype: DType,
        opts: &LoadOptions,
        quantize: Option<(GgmlDType, QuantizeOptions)>,
    ) -> Result<Self> {
        if device.is_cpu() && (dtype == DType::BF16 || opts.vision_dtype == Some(DType::BF16)) {
            return Err(VisualGlmError::Input(
                "bf16 is not supported on the CPU (candle has no CPU bf16 matmul): use f32 or f16"
                    .into(),
            ));
        }
        if is_gguf_path(path) {
            return load_gguf(path, device, dtype, opts).map_err(Into::into);
        }
        let ck = checkpoint::open(path, opts)?;
        let expected = expected_parameters(&ck.config)?;
        checkpoint::validate(&ck, &expected)?;
        let build = BuildOptions {
            vision_dtype: opts.vision_dtype,
        };
        build_streamed(ck, device, dtype, &build, quantize)
    }
}
