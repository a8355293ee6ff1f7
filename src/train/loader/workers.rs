//! Worker threads that build batches ahead of the training loop.
//!
//! Worker `w` of `n` builds batches `w, w + n, w + 2n, ...` and sends them through its own
//! bounded channel. The consumer reads the channels in turn, so batches arrive in index order
//! and are identical whatever the number of workers.

use std::sync::mpsc::{sync_channel, Receiver};
use std::thread::JoinHandle;

use tch::{Device, Kind, Tensor};

use crate::train::augment::{Stage, StageTimes};

use super::batch::{BatchSampler, HostBatch};
use super::error::{LoaderError, Result};

/// A batch as tensors: data (B, C, H, W) float32 and one (B, 1, h, w) int16 label tensor per
/// deep-supervision output, full resolution first (nnU-Net's `target` list, also int16).
#[derive(Debug)]
pub struct Batch {
    pub data: Tensor,
    pub target: Vec<Tensor>,
    pub keys: Vec<String>,
    pub times: StageTimes,
}

impl HostBatch {
    /// Copies the batch into tensors, in page-locked memory when `pin_memory` is set so that
    /// the copy to a CUDA device can run asynchronously.
    pub fn into_tensors(self, pin_memory: bool) -> Result<Batch> {
        let mut times = self.times;
        let start = std::time::Instant::now();
        let mut data = tensor_from(&self.images, &self.shape, Kind::Float)?;
        let mut target = Vec::with_capacity(self.targets.len());
        for (values, shape) in &self.targets {
            target.push(tensor_from(
                std::slice::from_ref(values),
                shape,
                Kind::Int16,
            )?);
        }
        // NOTE: the pinned path has not run on a CUDA machine yet.
        if pin_memory {
            data = data.f_pin_memory(Device::Cuda(0))?;
            target = target
                .iter()
                .map(|t| t.f_pin_memory(Device::Cuda(0)))
                .collect::<std::result::Result<_, _>>()?;
        }
        times.add(Stage::Collate, start.elapsed());
        Ok(Batch {
            data,
            target,
            keys: self.keys,
            times,
        })
    }
}

/// Copies `parts` one after the other into a new CPU tensor with plain memcpy calls.
/// `Tensor::from_slice` would run libtorch's parallel copy, whose OpenMP threads spin in every
/// worker and, on a machine with few cores, took a third of the loader's CPU time in a profile
/// of `bench loader`.
fn tensor_from<T: Copy>(parts: &[Vec<T>], shape: &[usize; 4], kind: Kind) -> Result<Tensor> {
    let count: usize = shape.iter().product();
    let total: usize = parts.iter().map(Vec::len).sum();
    assert_eq!(total, count, "batch buffers do not match the shape");
    assert_eq!(
        std::mem::size_of::<T>(),
        kind.elt_size_in_bytes(),
        "element type mismatch"
    );
    let dims: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
    let tensor = Tensor::f_empty(dims.as_slice(), (kind, Device::Cpu))?;
    let mut dst = tensor.data_ptr() as *mut T;
    for part in parts {
        // SAFETY: the tensor is new, contiguous, on the CPU and has room for exactly `count` elements
        // of the same size as T (both checked above), the parts add up to `count`, and nothing
        // else refers to the tensor yet.
        unsafe {
            std::ptr::copy_nonoverlapping(part.as_ptr(), dst, part.len());
            dst = dst.add(part.len());
        }
    }
    Ok(tensor)
}

/// Returns the default worker count: one per available core, as the operating system reports.
pub fn default_workers() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Prefetches `num_batches` batches of one epoch on worker threads.
pub struct PrefetchLoader {
    receivers: Vec<Receiver<Result<Batch>>>,
    handles: Vec<Option<JoinHandle<()>>>,
    next: u64,
    num_batches: u64,
}

impl PrefetchLoader {
    /// Starts `workers` threads, each keeping up to `queue_depth` finished batches waiting.
    /// `pin_memory` is ignored (with no error) when CUDA is not available.
    pub fn new(
        sampler: BatchSampler,
        epoch: u64,
        num_batches: u64,
        workers: usize,
        queue_depth: usize,
        pin_memory: bool,
    ) -> Result<PrefetchLoader> {
        if workers == 0 {
            return Err(LoaderError::Config(
                "the worker count is 0; use at least 1".into(),
            ));
        }
        let pin = pin_memory && tch::Cuda::is_available();
        let mut receivers = Vec::with_capacity(workers);
        let mut handles = Vec::with_capacity(workers);
        for worker in 0..workers {
            let (sender, receiver) = sync_channel(queue_depth.max(1));
            let sampler = sampler.clone();
            let handle = std::thread::Builder::new()
                .name(format!("loader-{worker}"))
                .spawn(move || {
                    let mut index = worker as u64;
                    while index < num_batches {
                        let batch = sampler.sample_batch(epoch, index).into_tensors(pin);
                        if sender.send(batch).is_err() {
                            return; // The loader was dropped.
                        }
                        index += workers as u64;
                    }
                })
                .map_err(|e| LoaderError::Worker {
                    worker,
                    reason: format!("failed to start: {e}"),
                })?;
            receivers.push(receiver);
            handles.push(Some(handle));
        }
        Ok(PrefetchLoader {
            receivers,
            handles,
            next: 0,
            num_batches,
        })
    }
}

impl Iterator for PrefetchLoader {
    type Item = Result<Batch>;

    fn next(&mut self) -> Option<Result<Batch>> {
        if self.next >= self.num_batches {
            return None;
        }
        let worker = (self.next % self.receivers.len() as u64) as usize;
        self.next += 1;
        match self.receivers[worker].recv() {
            Ok(batch) => Some(batch),
            Err(_) => {
                // The sender is gone before its batch arrived, so the thread panicked.
                let reason = match self.handles[worker].take().map(JoinHandle::join) {
                    Some(Err(panic)) => panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_else(|| "panicked".into()),
                    _ => "exited early".into(),
                };
                self.next = self.num_batches;
                Some(Err(LoaderError::Worker { worker, reason }))
            }
        }
    }
}

impl Drop for PrefetchLoader {
    fn drop(&mut self) {
        // Dropping the receivers makes blocked senders fail, so every worker returns.
        self.receivers.clear();
        for handle in self.handles.iter_mut().filter_map(Option::take) {
            let _ = handle.join();
        }
    }
}
