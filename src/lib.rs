//! Swin-UMamba and nnU-Net v2 style 2D medical image segmentation on libtorch.
//!
//! The modules follow the pipeline: raw datasets (`dataset`) are planned (`plan`) and
//! preprocessed (`preprocess`), batches feed the networks (`nets`) in training (`train`),
//! and trained weights (`weights`) predict (`infer`) and are scored (`eval`). `ablate`
//! drives the whole chain over experiment grids.

pub mod bench;
pub mod info;
pub mod nets;
pub mod scan;
