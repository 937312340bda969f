//! visualglm-eval
