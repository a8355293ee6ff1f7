//! Training logs a user watches: the per-epoch history (nnU-Net's `nnUNetLogger`), a
//! timestamped `training_log.txt`, TensorBoard event files and `progress.png`.

pub mod history;
pub mod progress;
pub mod tensorboard;
pub mod text;
