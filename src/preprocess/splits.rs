//! Cross-validation splits (`splits_final.json`): nnU-Net's five folds from scikit-learn's
//! `KFold(n_splits=5, shuffle=True, random_state=12345)` on the sorted case ids.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::random::RandomState;
use super::PreprocessError;

/// Seed of nnU-Net's default split.
pub const SPLIT_SEED: u32 = 12345;
/// Folds of nnU-Net's default split.
pub const NUM_FOLDS: usize = 5;

/// One fold: training and validation case ids.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fold {
    pub train: Vec<String>,
    pub val: Vec<String>,
}

/// K-fold split as scikit-learn's shuffled `KFold`: the indices are shuffled with
/// `RandomState(seed)`, cut into `n_splits` consecutive chunks (the first `n % n_splits`
/// one longer), and both sides of each fold are listed in sorted index order.
pub fn generate_crossval_split(sorted_ids: &[String], seed: u32, n_splits: usize) -> Vec<Fold> {
    let n = sorted_ids.len();
    let mut indices: Vec<usize> = (0..n).collect();
    RandomState::new(seed).shuffle(&mut indices);
    let mut folds = Vec::with_capacity(n_splits);
    let mut start = 0;
    for k in 0..n_splits {
        let size = n / n_splits + usize::from(k < n % n_splits);
        let mut is_val = vec![false; n];
        for &i in &indices[start..start + size] {
            is_val[i] = true;
        }
        start += size;
        let pick = |want: bool| {
            (0..n)
                .filter(|&i| is_val[i] == want)
                .map(|i| sorted_ids[i].clone())
                .collect()
        };
        folds.push(Fold {
            train: pick(false),
            val: pick(true),
        });
    }
    folds
}

/// Returns the splits in `path`, creating the default five folds there first when the
/// file does not exist.
pub fn load_or_create_splits(
    path: &Path,
    case_ids: &[String],
) -> Result<Vec<Fold>, PreprocessError> {
    if path.exists() {
        let text = std::fs::read_to_string(path).map_err(|e| PreprocessError::io(path, e))?;
        return serde_json::from_str(&text).map_err(|e| PreprocessError::Input {
            path: path.into(),
            message: format!(
                "invalid splits file ({e}); fix it or delete it to get the default folds"
            ),
        });
    }
    let mut sorted = case_ids.to_vec();
    sorted.sort();
    if sorted.len() < NUM_FOLDS {
        return Err(PreprocessError::Input {
            path: path.into(),
            message: format!(
                "{} cases are fewer than {NUM_FOLDS} folds; write splits_final.json by hand",
                sorted.len()
            ),
        });
    }
    let folds = generate_crossval_split(&sorted, SPLIT_SEED, NUM_FOLDS);
    let text = crate::plan::to_json_pretty(&folds);
    crate::dataset::write_atomic(path, text.as_bytes())?;
    Ok(folds)
}
