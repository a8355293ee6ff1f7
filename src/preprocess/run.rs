//! Preprocessing a whole dataset: cases in parallel with rayon, a progress bar, resumable.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;

use super::{preprocess_case, write_case, PreprocessError};
use crate::dataset::{read_case_files, CaseFiles, RawDataset};
use crate::plan::Plans;

/// Name of the file recording which configuration a preprocessed folder was made with.
const CONFIG_CHECKSUM_FILE: &str = "configuration.crc32c";

/// Case counts of a [`preprocess_dataset`] run.
#[derive(Debug, Clone)]
pub struct PreprocessSummary {
    pub output: PathBuf,
    pub processed: usize,
    pub skipped: usize,
}

fn case_done(folder: &Path, id: &str) -> bool {
    ["npy", "json"]
        .iter()
        .all(|e| folder.join(format!("{id}.{e}")).exists())
        && folder.join(format!("{id}_seg.npy")).exists()
}

/// Removes leftovers of an interrupted run (`*.tmp`) and, when the configuration changed
/// since the folder was written, every case in it.
fn prepare_output(folder: &Path, checksum: u32) -> Result<(), PreprocessError> {
    let marker = folder.join(CONFIG_CHECKSUM_FILE);
    let previous = std::fs::read_to_string(&marker).ok();
    if folder.exists() && previous.as_deref() != Some(checksum.to_string().as_str()) {
        std::fs::remove_dir_all(folder).map_err(|e| PreprocessError::io(folder, e))?;
    }
    std::fs::create_dir_all(folder).map_err(|e| PreprocessError::io(folder, e))?;
    for entry in std::fs::read_dir(folder)
        .map_err(|e| PreprocessError::io(folder, e))?
        .flatten()
    {
        if entry.file_name().to_string_lossy().ends_with(".tmp") {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    crate::dataset::write_atomic(&marker, checksum.to_string().as_bytes())?;
    Ok(())
}

/// Preprocesses every training case of `dataset` with configuration `config_name` of
/// `plans` into `<preprocessed>/<configuration's data_identifier>/`, copies the labels to
/// `gt_segmentations/` and creates `splits_final.json` if missing. Finished cases of an
/// earlier run with the same configuration are kept; `threads` = 0 uses all cores.
pub fn preprocess_dataset(
    dataset: &RawDataset,
    plans: &Plans,
    config_name: &str,
    preprocessed: &Path,
    threads: usize,
    progress: bool,
) -> Result<PreprocessSummary, PreprocessError> {
    let config = plans.configuration(config_name)?;
    let checksum = crc32c::crc32c(
        serde_json::to_string(&config)
            .expect("serialises")
            .as_bytes(),
    );
    let output = preprocessed.join(&config.data_identifier);
    prepare_output(&output, checksum)?;
    let cases = dataset.training_cases()?;
    let gt = preprocessed.join("gt_segmentations");
    std::fs::create_dir_all(&gt).map_err(|e| PreprocessError::io(&gt, e))?;
    let todo: Vec<&CaseFiles> = cases
        .iter()
        .filter(|c| !case_done(&output, &c.id))
        .collect();
    let skipped = cases.len() - todo.len();
    let bar = if progress {
        ProgressBar::new(todo.len() as u64)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template(
            "preprocessing {bar:30} {pos}/{len} cases, {elapsed} elapsed, eta {eta}",
        )
        .expect("valid template"),
    );
    let done = AtomicUsize::new(0);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("thread pool");
    let work = |case: &&CaseFiles| -> Result<(), PreprocessError> {
        let raw = read_case_files(case)?;
        let processed = preprocess_case(
            &raw.image,
            raw.label.as_ref(),
            plans,
            &config,
            &dataset.json,
        )
        .map_err(|message| PreprocessError::Input {
            path: case.images[0].clone(),
            message,
        })?;
        write_case(&output, &case.id, &processed)?;
        if let Some(label) = &case.label {
            let target = gt.join(label.file_name().expect("label has a file name"));
            let bytes = std::fs::read(label).map_err(|e| PreprocessError::io(label, e))?;
            crate::dataset::write_atomic(&target, &bytes)?;
        }
        done.fetch_add(1, Ordering::Relaxed);
        bar.inc(1);
        Ok(())
    };
    pool.install(|| todo.par_iter().try_for_each(work))?;
    bar.finish_and_clear();
    let ids: Vec<String> = cases.iter().map(|c| c.id.clone()).collect();
    super::load_or_create_splits(&preprocessed.join("splits_final.json"), &ids)?;
    Ok(PreprocessSummary {
        output,
        processed: done.into_inner(),
        skipped,
    })
}
