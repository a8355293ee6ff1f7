//! Training: the data pipeline that turns preprocessed cases into augmented batches, the
//! loss, optimisers, learning-rate schedules, trainers, checkpoints and logs.

pub mod augment;
pub mod checkpoint;
pub mod cli;
pub mod data;
pub mod dataset_run;
pub mod error;
pub mod loader;
pub mod loader_source;
pub mod logging;
pub mod loss;
pub mod nets_adapter;
pub mod network;
pub mod optim;
pub mod precision;
pub mod schedule;
pub mod setup;
pub mod synthetic;
pub mod trainer;
