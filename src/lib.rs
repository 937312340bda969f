//! visualglm
