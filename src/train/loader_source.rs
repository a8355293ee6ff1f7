//! [`BatchSource`] over nnU-Net's batch loader ([`crate::train::loader`]).
//!
//! Each batch is keyed by one `u64` drawn from the generator the trainer passes to
//! [`BatchSource::next_batch`], and [`BatchSampler::sample_batch`] derives every random draw
//! of that batch from the key. A batch therefore depends only on the trainer's (seed, epoch)
//! stream, so a continued run gets the same batches as an uninterrupted one.
//!
//! Batches are built ahead of time on worker threads: a clone of the generator predicts the
//! next keys, and a batch built for a key is used only when the trainer's own generator draws
//! that key, so prefetching never changes which batches the trainer sees.

use std::collections::HashMap;
use std::thread::JoinHandle;

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::data::{Batch, BatchSource};
use super::error::TrainError;
use super::loader::{self, BatchSampler};

type Pending = JoinHandle<loader::Result<loader::Batch>>;

/// Training or validation batches of a set of preprocessed cases.
pub struct LoaderSource {
    sampler: BatchSampler,
    prefetch: usize,
    pending: HashMap<u64, Pending>,
}

impl LoaderSource {
    /// Serves batches of `sampler`, keeping up to `prefetch` future batches in progress on
    /// worker threads (0: build each batch when it is requested).
    pub fn new(sampler: BatchSampler, prefetch: usize) -> Self {
        LoaderSource {
            sampler,
            prefetch,
            pending: HashMap::new(),
        }
    }

    /// The sampler and its configuration.
    pub fn sampler(&self) -> &BatchSampler {
        &self.sampler
    }

    fn spawn(&self, key: u64) -> Pending {
        let sampler = self.sampler.clone();
        std::thread::spawn(move || sampler.sample_batch(key, 0).into_tensors(false))
    }
}

fn data_error(e: impl std::fmt::Display) -> TrainError {
    TrainError::Data(e.to_string())
}

impl BatchSource for LoaderSource {
    fn next_batch(&mut self, rng: &mut ChaCha8Rng) -> Result<Batch, TrainError> {
        let key: u64 = rng.gen();

        // Predict the next keys from a copy of the generator. The result of a batch started for
        // a key the trainer never draws (for example after the epoch ends) is discarded.
        let mut lookahead = rng.clone();
        let upcoming: Vec<u64> = (0..self.prefetch).map(|_| lookahead.gen()).collect();
        let current = self.pending.remove(&key);
        self.pending.retain(|k, _| upcoming.contains(k));
        for next in &upcoming {
            if !self.pending.contains_key(next) {
                let handle = self.spawn(*next);
                self.pending.insert(*next, handle);
            }
        }

        let batch = match current {
            Some(handle) => handle
                .join()
                .map_err(|_| data_error("a loader thread panicked"))?,
            None => self.sampler.sample_batch(key, 0).into_tensors(false),
        }
        .map_err(data_error)?;
        Ok(Batch {
            data: batch.data,
            targets: batch.target,
        })
    }
}
