//! visualglm-qformer
