//! Loads the images of upcoming batches on rayon while the current step runs.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

use rayon::prelude::*;

use super::dataset::{DataPosition, Dataset, Sampler};
use super::example::Example;
use crate::error::TrainError;

/// "Load and preprocess one image": the root crate provides it (decode, resize, normalise).
///
/// Any `Fn(&Path) -> Result<T, String> + Send + Sync` closure is an `ImageLoader`.
pub trait ImageLoader: Send + Sync + 'static {
    /// The preprocessed image (e.g. a `[3, 224, 224]` tensor).
    type Image: Send + 'static;
    /// Loads `path`; the error message is wrapped into [`TrainError::ImageLoad`].
    fn load(&self, path: &Path) -> Result<Self::Image, String>;
}

impl<F, T> ImageLoader for F
where
    F: Fn(&Path) -> Result<T, String> + Send + Sync + 'static,
    T: Send + 'static,
{
    type Image = T;
    fn load(&self, path: &Path) -> Result<T, String> {
        self(path)
    }
}

/// An example's images, or the first that failed to load and why.
type Loaded<T> = Result<Vec<T>, (PathBuf, String)>;

/// One batch with its images loaded.
#[derive(Debug)]
pub struct LoadedBatch<T> {
    /// The examples whose images loaded, in batch order.
    pub examples: Vec<Example>,
    /// Their images (each example's, in order), aligned with `examples`.
    pub images: Vec<Vec<T>>,
    /// Examples with an image that failed to load (the step should count and skip them).
    pub failed: Vec<TrainError>,
    /// The data position after this batch: store it in the checkpoint written after the
    /// step that consumed this batch.
    pub position_after: DataPosition,
}

/// A background thread that draws batches from a [`Sampler`] and loads their images in
/// parallel, keeping up to `depth` finished batches queued ahead of the consumer.
///
/// Dropping it stops the thread.
pub struct Prefetcher<T: Send + 'static> {
    rx: Option<Receiver<LoadedBatch<T>>>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl<T: Send + 'static> Prefetcher<T> {
    /// Starts prefetching from `sampler`'s current position. `max_batches` bounds the
    /// stream (`None`: endless, epoch after epoch).
    pub fn spawn<L: ImageLoader<Image = T>>(
        dataset: Arc<Dataset>,
        mut sampler: Sampler,
        loader: Arc<L>,
        depth: usize,
        max_batches: Option<u64>,
    ) -> Self {
        let (tx, rx) = sync_channel(depth.max(1));
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut produced = 0u64;
            while !stop2.load(Ordering::Relaxed) && max_batches.is_none_or(|m| produced < m) {
                let indices = sampler.next_batch();
                let position_after = sampler.position();
                let loaded: Vec<(Example, Loaded<T>)> = indices
                    .par_iter()
                    .filter_map(|&i| dataset.get(i))
                    .map(|ex| {
                        // A panicking loader fails this example, not the whole stream.
                        let res = ex
                            .images
                            .iter()
                            .map(|path| {
                                catch_unwind(AssertUnwindSafe(|| loader.load(path)))
                                    .unwrap_or_else(|_| Err("the image loader panicked".into()))
                                    .map_err(|reason| (path.clone(), reason))
                            })
                            .collect::<Result<Vec<T>, _>>();
                        (ex.clone(), res)
                    })
                    .collect();
                let mut batch = LoadedBatch {
                    examples: Vec::with_capacity(loaded.len()),
                    images: Vec::with_capacity(loaded.len()),
                    failed: Vec::new(),
                    position_after,
                };
                for (ex, res) in loaded {
                    match res {
                        Ok(img) => {
                            batch.examples.push(ex);
                            batch.images.push(img);
                        }
                        Err((path, reason)) => batch.failed.push(TrainError::ImageLoad {
                            path,
                            record: ex.source.to_string(),
                            reason,
                        }),
                    }
                }
                if tx.send(batch).is_err() {
                    break;
                }
                produced += 1;
            }
        });
        Self {
            rx: Some(rx),
            stop,
            handle: Some(handle),
        }
    }

    /// The next batch; `None` once `max_batches` were delivered.
    pub fn next_batch(&mut self) -> Option<LoadedBatch<T>> {
        self.rx.as_ref()?.recv().ok()
    }
}

impl<T: Send + 'static> Iterator for Prefetcher<T> {
    type Item = LoadedBatch<T>;
    fn next(&mut self) -> Option<Self::Item> {
        self.next_batch()
    }
}

impl<T: Send + 'static> Drop for Prefetcher<T> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Dropping the receiver unblocks a pending send.
        self.rx.take();
        if let Some(h) = self.handle.take() {
            if h.join().is_err() {
                tracing::error!("the prefetch thread panicked (a bug in the image loader?)");
            }
        }
    }
}
