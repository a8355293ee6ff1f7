//! Preprocessed cases: memory-mapped image and label arrays plus the stored foreground
//! locations, in the layout docs/preprocessed-format.md describes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::error::{io_error, LoaderError, Result};
use super::npy::NpyArray;

/// Stored foreground locations of one label, each `[c, z, y, x]` as nnU-Net writes them.
pub type Locations = Vec<[i64; 4]>;

/// One preprocessed case, memory-mapped.
pub struct Case {
    pub name: String,
    image: NpyArray,
    seg: NpyArray,
    /// Image shape (C, Z, Y, X).
    pub shape: [usize; 4],
    /// Foreground locations per label, ascending by label. Labels without stored locations
    /// stay in the list (empty), because nnU-Net skips them when sampling, not when loading.
    pub class_locations: Vec<(i64, Locations)>,
}

impl Case {
    /// Opens `<folder>/<name>.npy`, `<name>_seg.npy` and `<name>.json` and checks that their
    /// shapes agree.
    pub fn open(folder: &Path, name: &str) -> Result<Case> {
        let image = NpyArray::open(&folder.join(format!("{name}.npy")))?;
        let seg = NpyArray::open(&folder.join(format!("{name}_seg.npy")))?;
        let shape: [usize; 4] = image.shape().try_into().map_err(|_| LoaderError::Shape {
            path: image.path().to_path_buf(),
            found: image.shape().to_vec(),
            expected: "the image must have four axes (C, Z, Y, X)".into(),
        })?;
        image.as_f32()?;
        seg.as_i8()?;
        if seg.shape() != [1, shape[1], shape[2], shape[3]] {
            return Err(LoaderError::Shape {
                path: seg.path().to_path_buf(),
                found: seg.shape().to_vec(),
                expected: format!(
                    "the label must be (1, Z, Y, X) = {:?}",
                    [1, shape[1], shape[2], shape[3]]
                ),
            });
        }
        let props_path = folder.join(format!("{name}.json"));
        let class_locations = read_class_locations(&props_path, &shape)?;
        Ok(Case {
            name: name.to_string(),
            image,
            seg,
            shape,
            class_locations,
        })
    }

    /// Copies the window with lower corner `corner` = (z, y, x) and `size` = (height, width)
    /// from slice z into `image` (C, height, width) and `seg` (height, width). Pixels outside
    /// the case become 0 in the image and -1 in the label, as nnU-Net's `crop_and_pad_nd`
    /// pads them.
    pub fn read_window(
        &self,
        corner: [i64; 3],
        size: [usize; 2],
        image: &mut [f32],
        seg: &mut [i16],
    ) {
        let [z, y0, x0] = corner;
        let [height, width] = size;
        let [channels, depth, ny, nx] = self.shape;
        assert_eq!(image.len(), channels * height * width, "image buffer size");
        assert_eq!(seg.len(), height * width, "label buffer size");
        image.fill(0.0);
        seg.fill(-1);
        if z < 0 || z >= depth as i64 {
            return;
        }
        let data = self.image.as_f32().expect("dtype checked in Case::open");
        let labels = self.seg.as_i8().expect("dtype checked in Case::open");
        let z = z as usize;

        // Overlap of the window with the image, in window coordinates.
        let y_start = (-y0).max(0) as usize;
        let y_end = (ny as i64 - y0).clamp(0, height as i64) as usize;
        let x_start = (-x0).max(0) as usize;
        let x_end = (nx as i64 - x0).clamp(0, width as i64) as usize;
        if y_start >= y_end || x_start >= x_end {
            return;
        }
        let src_x = (x0 + x_start as i64) as usize;
        let run = x_end - x_start;
        for y in y_start..y_end {
            let src_y = (y0 + y as i64) as usize;
            let row = (z * ny + src_y) * nx + src_x;
            for c in 0..channels {
                let src = c * depth * ny * nx + row;
                let dst = (c * height + y) * width + x_start;
                image[dst..dst + run].copy_from_slice(&data[src..src + run]);
            }
            let dst = y * width + x_start;
            for (out, &v) in seg[dst..dst + run].iter_mut().zip(&labels[row..row + run]) {
                *out = v as i16;
            }
        }
    }
}

fn read_class_locations(path: &Path, shape: &[usize; 4]) -> Result<Vec<(i64, Locations)>> {
    let text = std::fs::read_to_string(path).map_err(io_error(path))?;
    let props: serde_json::Value =
        serde_json::from_str(&text).map_err(|source| LoaderError::Json {
            path: path.to_path_buf(),
            source,
        })?;
    let bad = |reason: String| LoaderError::Plan {
        path: path.to_path_buf(),
        reason,
    };
    let map = props
        .get("class_locations")
        .and_then(|v| v.as_object())
        .ok_or_else(|| {
            bad("missing 'class_locations' object; rerun `swin-umamba preprocess`".into())
        })?;

    let mut out = BTreeMap::new();
    for (key, value) in map {
        let label: i64 = key.parse().map_err(|_| {
            bad(format!(
                "class_locations key {key:?} is not an integer label"
            ))
        })?;
        let locations: Vec<Vec<i64>> = serde_json::from_value(value.clone())
            .map_err(|e| bad(format!("class_locations[{key:?}]: {e}")))?;
        let mut checked = Vec::with_capacity(locations.len());
        for loc in locations {
            let inside = loc.len() == 4
                && loc[0] == 0
                && (1..4).all(|i| loc[i] >= 0 && (loc[i] as usize) < shape[i]);
            if !inside {
                return Err(LoaderError::ClassLocation {
                    path: path.to_path_buf(),
                    location: loc,
                    shape: shape.to_vec(),
                });
            }
            checked.push([loc[0], loc[1], loc[2], loc[3]]);
        }
        out.insert(label, checked);
    }
    Ok(out.into_iter().collect())
}

/// All preprocessed cases of one configuration folder (e.g. `nnUNetPlans_2d`).
pub struct CaseFolder {
    pub folder: PathBuf,
    pub cases: Vec<Case>,
}

impl CaseFolder {
    /// Lists the case names in `folder`: every `<name>.json` with a `<name>.npy` beside it.
    pub fn case_names(folder: &Path) -> Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(folder).map_err(io_error(folder))? {
            let path = entry.map_err(io_error(folder))?.path();
            if path.extension().is_some_and(|e| e == "json") {
                let stem = path.file_stem().unwrap().to_string_lossy().to_string();
                if folder.join(format!("{stem}.npy")).is_file() {
                    names.push(stem);
                }
            }
        }
        names.sort();
        Ok(names)
    }

    /// Opens the named cases, or every case in the folder when `names` is `None`.
    pub fn open(folder: &Path, names: Option<&[String]>) -> Result<CaseFolder> {
        let all = Self::case_names(folder)?;
        let selected: Vec<String> = match names {
            None => all,
            Some(list) => {
                for name in list {
                    if !all.contains(name) {
                        return Err(LoaderError::MissingCase {
                            case: name.clone(),
                            folder: folder.to_path_buf(),
                        });
                    }
                }
                list.to_vec()
            }
        };
        if selected.is_empty() {
            return Err(LoaderError::NoCases {
                folder: folder.to_path_buf(),
            });
        }
        let cases = selected
            .iter()
            .map(|n| Case::open(folder, n))
            .collect::<Result<Vec<_>>>()?;
        Ok(CaseFolder {
            folder: folder.to_path_buf(),
            cases,
        })
    }

    /// Channel count, checked to be the same for every case.
    pub fn channels(&self) -> Result<usize> {
        let c = self.cases[0].shape[0];
        if let Some(other) = self.cases.iter().find(|k| k.shape[0] != c) {
            return Err(LoaderError::Shape {
                path: self.folder.join(format!("{}.npy", other.name)),
                found: other.shape.to_vec(),
                expected: format!(
                    "every case must have {c} channels like {}",
                    self.cases[0].name
                ),
            });
        }
        Ok(c)
    }
}
