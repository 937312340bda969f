//! Training data: readers for the release's formats, a deterministic sampler and an
//! image prefetcher.
//!
//! * [`load_data_file`] reads a JSON list (`[{"img","prompt","label"}, ...]`, the release's
//!   format), JSON Lines of the same records, or COCO caption JSON into [`Example`]s.
//! * [`Dataset`] + [`Sampler`] give a shuffled order that is a pure function of
//!   `(seed, epoch)`, so a run resumes at the exact [`DataPosition`].
//! * [`Prefetcher`] runs a caller-supplied [`ImageLoader`] on rayon ahead of the step.

mod bounded;
mod coco;
mod dataset;
mod example;
mod json_list;
mod jsonl;
mod load;
mod prefetch;
mod record;

pub use dataset::{DataPosition, Dataset, Sampler, SamplerConfig};
pub use example::{Example, RecordSource};
pub use load::{load_data_file, DataFormat};
pub use prefetch::{ImageLoader, LoadedBatch, Prefetcher};
pub use record::{LoadOptions, LoadReport};
