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

fn case_done(folder: &Path, case: &CaseFiles) -> bool {
    let id = &case.id;
    let complete = ["npy", "json"]
        .iter()
        .all(|e| folder.join(format!("{id}.{e}")).exists())
        && folder.join(format!("{id}_seg.npy")).exists();
    // A case counts as done only while its raw files are the ones it was made from, so
    // fixing a raw image or label and running `preprocess` again redoes that case.
    let recorded = std::fs::read_to_string(source_record_path(folder, id)).ok();
    complete && recorded.as_deref() == Some(source_fingerprint(case).as_str())
}

fn source_record_path(folder: &Path, id: &str) -> std::path::PathBuf {
    folder.join(format!("{id}.source"))
}

/// Names, sizes and modification times of a case's raw files, one line each.
fn source_fingerprint(case: &CaseFiles) -> String {
    let mut text = String::new();
    for path in case.images.iter().chain(case.label.iter()) {
        let (len, modified) = match std::fs::metadata(path) {
            Ok(meta) => {
                let modified = meta
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map(|d| d.as_nanos())
                    .unwrap_or(0);
                (meta.len(), modified)
            }
            Err(_) => (0, 0),
        };
        text.push_str(&format!("{}\t{len}\t{modified}\n", path.display()));
    }
    text
}

/// Rejects label values that dataset.json does not list, naming the file and the fix;
/// `plan --verify-dataset-integrity` reports the same problem for every case at once.
fn check_label_values(
    case: &CaseFiles,
    label: &crate::dataset::Image,
    json: &crate::dataset::DatasetJson,
) -> Result<(), PreprocessError> {
    let known: std::collections::BTreeSet<i64> = json.all_label_values().into_iter().collect();
    let mut unknown = std::collections::BTreeSet::new();
    for &value in label.channel(0) {
        let class = value as i64;
        if value.fract() != 0.0 || !known.contains(&class) {
            unknown.insert(class);
            if unknown.len() > 10 {
                break;
            }
        }
    }
    if unknown.is_empty() {
        return Ok(());
    }
    let hint = if unknown.contains(&255) {
        "the mask looks saved as 0/255; convert it with `convert --layout generic --mask-rule \
         0:0,255:1`"
    } else {
        "fix the label file or add the labels to dataset.json"
    };
    Err(PreprocessError::Input {
        path: case.label.clone().unwrap_or_default(),
        message: format!(
            "label values {unknown:?} are not in dataset.json labels {known:?}; {hint} \
             (`plan --verify-dataset-integrity` lists every such file)"
        ),
    })
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
    let todo: Vec<&CaseFiles> = cases.iter().filter(|c| !case_done(&output, c)).collect();
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
        if let Some(label) = &raw.label {
            check_label_values(case, label, &dataset.json)?;
        }
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
        let record = source_record_path(&output, &case.id);
        crate::dataset::write_atomic(&record, source_fingerprint(case).as_bytes())?;
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
