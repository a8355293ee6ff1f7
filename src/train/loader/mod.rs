//! nnU-Net v2's training and validation data loading for 2D configurations: patch sampling
//! with foreground oversampling, the enlarged read window for rotation, padding, and worker
//! threads that prefetch augmented batches.

pub mod batch;
pub mod case;
pub mod error;
pub mod npy;
pub mod plan;
pub mod sampling;
pub mod workers;

pub use batch::{BatchSampler, HostBatch, LoaderConfig};
pub use case::{Case, CaseFolder};
pub use error::{LoaderError, Result};
pub use plan::LoaderPlanConfig;
pub use workers::{Batch, PrefetchLoader};
