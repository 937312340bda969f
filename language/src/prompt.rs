//! VisualGLM prompt construction (placeholder, being written).
