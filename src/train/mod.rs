//! Training: the data pipeline that turns preprocessed cases into augmented batches.

pub mod augment;
pub mod loader;
