//! `swin-umamba ablate`: the experiment runner behind the paper's pretrained-versus-scratch
//! tables. An experiment YAML names datasets, models, initialisations and folds; the runner
//! expands the grid, runs convert/plan/preprocess, pretrain, train-fold (which ends with
//! the fold's validation predictions) and evaluate for each cell, skips finished work,
//! resumes interrupted cells, and aggregates the results into Markdown, CSV and charts.

pub mod aggregate;
pub mod cli;
pub mod config;
pub mod demo;
pub mod grid;
pub mod runner;
pub mod slurm;
pub mod synthetic;
pub mod tasks;

use std::path::PathBuf;

/// Errors of the experiment runner.
#[derive(Debug, thiserror::Error)]
pub enum AblateError {
    #[error("cannot read or write {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid experiment file {path}: {message}")]
    InvalidExperiment { path: PathBuf, message: String },
    #[error("invalid experiment file {path}: key `{key}` has value `{value}`; allowed: {allowed}")]
    InvalidValue {
        path: PathBuf,
        key: String,
        value: String,
        allowed: String,
    },
    #[error("Slurm submission of {script} failed: {message}")]
    Slurm { script: PathBuf, message: String },
    #[error("cannot write chart {path}: {source}")]
    Chart {
        path: PathBuf,
        source: image::ImageError,
    },
}
