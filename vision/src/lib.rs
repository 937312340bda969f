//! visualglm-vision
