//! Folder locations (`nnUNet_raw`, `nnUNet_preprocessed`, `nnUNet_results`) and dataset
//! lookup by id or name.

use std::path::{Path, PathBuf};

use super::DatasetError;

/// The three nnU-Net folders. Each comes from its flag when given, else from the
/// environment variable of the same name.
#[derive(Debug, Clone, Default)]
pub struct DatasetFolders {
    pub raw: Option<PathBuf>,
    pub preprocessed: Option<PathBuf>,
    pub results: Option<PathBuf>,
}

impl DatasetFolders {
    /// Fills unset folders from `nnUNet_raw`, `nnUNet_preprocessed` and `nnUNet_results`.
    pub fn with_env(mut self) -> Self {
        let env = |name: &str| std::env::var_os(name).map(PathBuf::from);
        self.raw = self.raw.or_else(|| env("nnUNet_raw"));
        self.preprocessed = self.preprocessed.or_else(|| env("nnUNet_preprocessed"));
        self.results = self.results.or_else(|| env("nnUNet_results"));
        self
    }

    pub fn raw(&self) -> Result<&Path, DatasetError> {
        self.raw.as_deref().ok_or(DatasetError::FolderNotSet {
            which: "raw data",
            env: "nnUNet_raw",
            flag: "--raw",
        })
    }

    pub fn preprocessed(&self) -> Result<&Path, DatasetError> {
        self.preprocessed
            .as_deref()
            .ok_or(DatasetError::FolderNotSet {
                which: "preprocessed data",
                env: "nnUNet_preprocessed",
                flag: "--preprocessed",
            })
    }
}

/// Finds `DatasetXXX_Name` in `root` from an id ("4", "004") or a full or partial name
/// ("Dataset004_Kvasir", "Kvasir").
pub fn find_dataset(root: &Path, query: &str) -> Result<PathBuf, DatasetError> {
    let not_found = || DatasetError::NotFound {
        query: query.into(),
        root: root.into(),
    };
    let entries = std::fs::read_dir(root).map_err(|e| DatasetError::io(root, e))?;
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with("Dataset") && n.len() > 11 && n.as_bytes()[10] == b'_')
        .collect();
    names.sort();
    let matched: Vec<&String> = if let Ok(id) = query.parse::<u32>() {
        let prefix = format!("Dataset{id:03}_");
        names.iter().filter(|n| n.starts_with(&prefix)).collect()
    } else {
        let exact: Vec<&String> = names.iter().filter(|n| *n == query).collect();
        if exact.is_empty() {
            names.iter().filter(|n| &n[11..] == query).collect()
        } else {
            exact
        }
    };
    match matched.as_slice() {
        [one] => Ok(root.join(one)),
        _ => Err(not_found()),
    }
}

/// Formats the folder name nnU-Net uses for a dataset id and name.
pub fn dataset_folder_name(id: u32, name: &str) -> String {
    format!("Dataset{id:03}_{name}")
}
