//! `swin-umamba pretrain`: supervised ImageNet-style classification pretraining of the
//! VMamba-Tiny v0 encoder, writing a checkpoint in the official VMamba v0 layout.

pub mod classifier;
pub mod cli;
pub mod data;
pub mod run;
pub mod torch_save;
