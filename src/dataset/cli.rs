//! `swin-umamba convert`: release layouts and stand-ins to the nnU-Net raw format.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use super::convert::{self, ConvertTarget, MaskRule};
use super::DatasetFolders;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SourceLayout {
    /// CHAOS T2 MRI stand-in: image_<pid>.nii.gz, label_<pid>.nii.gz.
    Chaos,
    /// Kvasir-SEG: images/<id>.jpg, masks/<id>.jpg (JPEG masks thresholded at 127).
    Kvasir,
    /// scellseg cells: <style>/NNN_img.png, <style>/NNN_masks.png (instances).
    Scellseg,
    /// NeurIPS 2022 Cell Segmentation: images/cell_XXXXX.*, labels/cell_XXXXX_label.tiff.
    NeuripsCells,
    /// AMOS 2022: imagesTr/amos_XXXX.nii.gz and labelsTr (MRI cases, number ≥ 500).
    Amos,
    /// EndoVis 2017: instrument_dataset_N/left_frames and ground_truth/<Instrument>_labels.
    Endovis2017,
    /// Any images folder plus masks folder with the same file stems (needs --masks and --mask-rule).
    Generic,
}

/// Arguments of `swin-umamba convert`.
#[derive(Debug, Args)]
pub struct ConvertArgs {
    /// Source layout.
    #[arg(long, value_enum)]
    pub layout: SourceLayout,
    /// Source folder (for `generic`: the images folder).
    #[arg(long)]
    pub source: PathBuf,
    /// Masks folder, for `generic`.
    #[arg(long)]
    pub masks: Option<PathBuf>,
    /// Mask rule for `generic`: `t:127` (class 1 above 127) or a value map `0:0,255:1`.
    #[arg(long, default_value = "t:127")]
    pub mask_rule: String,
    /// Label names for `generic`, comma-separated, class 0 first.
    #[arg(long, default_value = "background,foreground")]
    pub labels: String,
    /// Dataset id of the output folder DatasetXXX_Name.
    #[arg(short = 'd', long)]
    pub id: u32,
    /// Dataset name of the output folder DatasetXXX_Name.
    #[arg(long)]
    pub name: String,
    /// Convert only the first N cases (by file name).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Raw data folder; defaults to $nnUNet_raw.
    #[arg(long)]
    pub raw: Option<PathBuf>,
}

pub fn run(args: ConvertArgs) -> anyhow::Result<()> {
    let folders = DatasetFolders {
        raw: args.raw.clone(),
        ..Default::default()
    }
    .with_env();
    let target = ConvertTarget {
        raw_root: folders.raw()?.to_path_buf(),
        id: args.id,
        name: args.name.clone(),
    };
    std::fs::create_dir_all(&target.raw_root)?;
    // Every command finds a dataset by its id, so a second folder with the same id would
    // make `-d ID` ambiguous.
    let own_folder = format!("Dataset{:03}_{}", args.id, args.name);
    let id_prefix = format!("Dataset{:03}_", args.id);
    for entry in std::fs::read_dir(&target.raw_root)?.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if name.starts_with(&id_prefix) && name != own_folder && !name.ends_with(".tmp") {
            anyhow::bail!(
                "dataset id {} is already used by {}; choose another --id or remove that folder",
                args.id,
                target.raw_root.join(&name).display()
            );
        }
    }
    let src = &args.source;
    let out = match args.layout {
        SourceLayout::Chaos => convert::convert_chaos(src, &target, args.limit)?,
        SourceLayout::Kvasir => convert::convert_kvasir(src, &target, args.limit)?,
        SourceLayout::Scellseg => convert::convert_scellseg(src, &target, args.limit)?,
        SourceLayout::NeuripsCells => convert::convert_neurips_cells(src, &target, args.limit)?,
        SourceLayout::Amos => convert::convert_amos(src, &target, args.limit)?,
        SourceLayout::Endovis2017 => convert::convert_endovis2017(src, &target, args.limit)?,
        SourceLayout::Generic => {
            let masks = args
                .masks
                .as_ref()
                .ok_or_else(|| anyhow::anyhow!("--layout generic needs --masks FOLDER"))?;
            let rule = MaskRule::parse(&args.mask_rule)?;
            let labels: Vec<&str> = args.labels.split(',').map(str::trim).collect();
            convert::convert_generic(src, masks, &rule, &labels, &target, args.limit)?
        }
    };
    let cases = std::fs::read_dir(out.join("labelsTr"))
        .map(|entries| entries.flatten().count())
        .unwrap_or(0);
    if cases == 0 {
        let _ = std::fs::remove_dir_all(&out);
        anyhow::bail!(
            "no case found in {} for --layout {:?}; check that the source folder and the layout \
             match (`swin-umamba convert --help` lists each layout's file names)",
            src.display(),
            args.layout
        );
    }
    println!("wrote {} ({cases} cases)", out.display());
    Ok(())
}
