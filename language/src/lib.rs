//! visualglm-language
