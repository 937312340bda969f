//! visualglm-lora
