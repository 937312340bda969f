//! visualglm-train
