//! The segmentation networks: Swin-UMamba (current and v1), Swin-UMamba†, nnU-Net's
//! `PlainConvUNet` and U-Mamba, built on `tch::nn::Path` so that VarStore names equal the
//! official PyTorch state-dict keys.
//!
//! [`build`] turns a [`ModelName`] and a [`ModelConfig`] into a [`Model`], which
//! implements [`SegmentationNet`], the interface the trainer uses.

pub mod cli;
pub mod config;
pub mod flops;
pub mod layers;
pub mod monai_blocks;
pub mod patch;
pub mod plain_unet;
pub mod ss2d;
pub mod state;
pub mod swin_umamba;
pub mod swin_umamba_d;
pub mod umamba;
pub mod vss;

use std::path::PathBuf;

use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

pub use config::{ModelConfig, ModelName};
pub use flops::FlopCounter;

/// Errors of the networks area.
#[derive(Debug, thiserror::Error)]
pub enum NetsError {
    #[error(
        "unknown model `{name}`; expected one of: swin-umamba, swin-umamba-v1, swin-umamba-d, \
         nnunet, umamba-bot, umamba-enc"
    )]
    UnknownModel { name: String },
    #[error("invalid model configuration: {reason}")]
    InvalidConfig { reason: String },
    #[error(
        "{path}: invalid model configuration YAML: {source}; see docs/networks.md for the fields"
    )]
    ConfigYaml {
        path: PathBuf,
        #[source]
        source: serde_yaml_ng::Error,
    },
    #[error(
        "{model} cannot take an input of {height}x{width}: height and width must be divisible \
         by {divisor}; the nearest valid size is {nearest_height}x{nearest_width}"
    )]
    InputSize {
        model: String,
        height: i64,
        width: i64,
        divisor: i64,
        nearest_height: i64,
        nearest_width: i64,
    },
    #[error(
        "{model} was built for inputs of exactly {expected_height}x{expected_width} (its Mamba \
         layers take channel tokens whose count depends on the size), got {height}x{width}; \
         build it with that patch size or use a size of {expected_height}x{expected_width}"
    )]
    FixedInputSize {
        model: String,
        height: i64,
        width: i64,
        expected_height: i64,
        expected_width: i64,
    },
    #[error("input has shape {shape:?}, expected (B, {channels}, H, W)")]
    InputShape { shape: Vec<i64>, channels: i64 },
    #[error("{source_name}: {message}")]
    StateDict {
        source_name: String,
        message: String,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Tch {
        path: PathBuf,
        #[source]
        source: tch::TchError,
    },
}

/// Interface of a segmentation network for the trainer.
pub trait SegmentationNet {
    /// Runs the network and returns every deep-supervision head, highest resolution
    /// first, as the official forward returns them. `train` switches DropPath on.
    ///
    /// # Shapes
    /// `x`: (B, C, H, W); head i: (B, K, H_i, W_i) with H_0 = H.
    fn forward_heads(&self, x: &Tensor, train: bool) -> Vec<Tensor>;

    /// Returns the parameters, named as in the official state dict.
    fn var_store(&self) -> &VarStore;

    /// Mutable access, for loading weights and changing dtype or device.
    fn var_store_mut(&mut self) -> &mut VarStore;

    /// Name prefixes of the pretrained encoder's parameters (e.g. `vssm_encoder.`),
    /// for freezing or separate learning rates; empty for networks without one.
    fn encoder_prefixes(&self) -> &'static [&'static str];

    /// Checks that an input of `height`×`width` fits the network.
    fn check_input_size(&self, height: i64, width: i64) -> Result<(), NetsError>;
}

/// The network behind a [`Model`].
#[derive(Debug)]
enum Network {
    SwinUMamba(Box<swin_umamba::SwinUMamba>),
    SwinUMambaD(Box<swin_umamba_d::SwinUMambaD>),
    PlainUNet(Box<plain_unet::PlainConvUNet>),
    UMamba(Box<umamba::UMamba>),
}

/// A built network with its VarStore.
pub struct Model {
    vs: VarStore,
    network: Network,
    pub name: ModelName,
    pub in_channels: i64,
    pub num_classes: i64,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Builds `name` with `config` in fp32 on `device`. `patch` is the training patch
/// (H, W); only U-Mamba_Enc depends on it. Parameters are initialised as the official
/// constructors do, from tch's global RNG (`tch::manual_seed`), but not with the same
/// random draws as PyTorch.
pub fn build(
    name: ModelName,
    config: &ModelConfig,
    in_channels: i64,
    num_classes: i64,
    patch: (i64, i64),
    device: Device,
) -> Result<Model, NetsError> {
    let vs = VarStore::new(device);
    let root = vs.root();
    let network = match (name, config) {
        (ModelName::SwinUMamba, ModelConfig::SwinUMamba(c)) => Network::SwinUMamba(Box::new(
            swin_umamba::SwinUMamba::new(root, in_channels, num_classes, c, false)?,
        )),
        (ModelName::SwinUMambaV1, ModelConfig::SwinUMamba(c)) => Network::SwinUMamba(Box::new(
            swin_umamba::SwinUMamba::new(root, in_channels, num_classes, c, true)?,
        )),
        (ModelName::SwinUMambaD, ModelConfig::SwinUMambaD(c)) => {
            let net = swin_umamba_d::SwinUMambaD::new(root, in_channels, num_classes, c)?;
            state::reinit_convs_he(&vs);
            Network::SwinUMambaD(Box::new(net))
        }
        (ModelName::Nnunet, ModelConfig::PlainUNet(c)) => Network::PlainUNet(Box::new(
            plain_unet::PlainConvUNet::new(root, in_channels, num_classes, c)?,
        )),
        (ModelName::UmambaBot | ModelName::UmambaEnc, ModelConfig::UMamba(c)) => {
            let net = umamba::UMamba::new(
                root,
                in_channels,
                num_classes,
                c,
                name == ModelName::UmambaEnc,
                patch,
            )?;
            state::reinit_convs_he(&vs);
            Network::UMamba(Box::new(net))
        }
        _ => {
            return Err(NetsError::InvalidConfig {
                reason: format!("the configuration given is not one for model `{name}`"),
            })
        }
    };
    Ok(Model {
        vs,
        network,
        name,
        in_channels,
        num_classes,
    })
}

impl Model {
    /// Converts every parameter to `kind` (f32 or f64).
    pub fn set_kind(&mut self, kind: Kind) {
        self.vs.set_kind(kind);
    }

    /// Number of parameters (elements of every state-dict entry).
    pub fn parameter_count(&self) -> i64 {
        self.vs.variables().values().map(|t| t.numel() as i64).sum()
    }

    /// Counts FLOPs of one forward pass at batch 1 for an input of `height`×`width`.
    pub fn flops(&self, height: i64, width: i64) -> FlopCounter {
        let mut counter = FlopCounter::default();
        match &self.network {
            Network::SwinUMamba(n) => n.flops(&mut counter, 1, (height, width)),
            Network::SwinUMambaD(n) => n.flops(&mut counter, 1, (height, width)),
            Network::PlainUNet(n) => n.flops(&mut counter, 1, (height, width)),
            Network::UMamba(n) => n.flops(&mut counter, 1, (height, width)),
        }
        counter
    }

    /// Runs a forward pass after checking the input's shape.
    pub fn try_forward(&self, x: &Tensor, train: bool) -> Result<Vec<Tensor>, NetsError> {
        let shape = x.size();
        if shape.len() != 4 || shape[1] != self.in_channels {
            return Err(NetsError::InputShape {
                shape,
                channels: self.in_channels,
            });
        }
        self.check_input_size(shape[2], shape[3])?;
        Ok(self.forward_heads(x, train))
    }

    fn divisor(&self) -> i64 {
        match &self.network {
            Network::SwinUMamba(_) | Network::SwinUMambaD(_) => 32,
            Network::PlainUNet(n) => n.divisor(),
            Network::UMamba(n) => n.divisor(),
        }
    }
}

impl SegmentationNet for Model {
    fn forward_heads(&self, x: &Tensor, train: bool) -> Vec<Tensor> {
        match &self.network {
            Network::SwinUMamba(n) => n.forward(x, train),
            Network::SwinUMambaD(n) => n.forward(x, train),
            Network::PlainUNet(n) => n.forward(x),
            Network::UMamba(n) => n.forward(x),
        }
    }

    fn var_store(&self) -> &VarStore {
        &self.vs
    }

    fn var_store_mut(&mut self) -> &mut VarStore {
        &mut self.vs
    }

    fn encoder_prefixes(&self) -> &'static [&'static str] {
        match self.network {
            Network::SwinUMamba(_) | Network::SwinUMambaD(_) => &["vssm_encoder."],
            Network::PlainUNet(_) | Network::UMamba(_) => &[],
        }
    }

    fn check_input_size(&self, height: i64, width: i64) -> Result<(), NetsError> {
        if let Network::UMamba(n) = &self.network {
            if let Some((eh, ew)) = n.fixed_input_size() {
                if (height, width) != (eh, ew) {
                    return Err(NetsError::FixedInputSize {
                        model: self.name.to_string(),
                        height,
                        width,
                        expected_height: eh,
                        expected_width: ew,
                    });
                }
            }
        }
        let divisor = self.divisor();
        let nearest = |n: i64| ((n as f64 / divisor as f64).round() as i64).max(1) * divisor;
        if height % divisor != 0 || width % divisor != 0 || height <= 0 || width <= 0 {
            return Err(NetsError::InputSize {
                model: self.name.to_string(),
                height,
                width,
                divisor,
                nearest_height: nearest(height),
                nearest_width: nearest(width),
            });
        }
        Ok(())
    }
}

impl Model {
    /// Loads an official state dict (name → tensor), strictly: every parameter must be
    /// present with its shape and no other key may appear. For `PlainConvUNet` and U-Mamba, keys that
    /// PyTorch lists twice for one parameter may appear under either name but must agree.
    pub fn load_state_dict(
        &self,
        tensors: &std::collections::HashMap<String, Tensor>,
        source_name: &str,
    ) -> Result<(), NetsError> {
        if !matches!(self.network, Network::PlainUNet(_) | Network::UMamba(_)) {
            return state::load_named_tensors(&self.vs, tensors, source_name);
        }
        let mut canonical = std::collections::HashMap::new();
        for (name, value) in tensors {
            let key = plain_unet::canonical_name(name);
            if let Some(previous) = canonical.get(&key) {
                let previous: &Tensor = previous;
                if previous.size() != value.size() || !previous.equal(value) {
                    return Err(NetsError::StateDict {
                        source_name: source_name.to_string(),
                        message: format!(
                            "`{name}` names the same parameter as `{key}` but holds other \
                             values; the state dict is inconsistent"
                        ),
                    });
                }
            }
            canonical.insert(key, value.shallow_clone());
        }
        state::load_named_tensors(&self.vs, &canonical, source_name)
    }

    /// Lists every state-dict name PyTorch would list for this model, with its shape.
    pub fn official_state_dict_shapes(&self) -> Vec<(String, Vec<i64>)> {
        let mut names = Vec::new();
        for (name, var) in self.vs.variables() {
            if matches!(self.network, Network::PlainUNet(_) | Network::UMamba(_)) {
                for alias in plain_unet::official_aliases(&name) {
                    names.push((alias, var.size()));
                }
            }
            names.push((name, var.size()));
        }
        names.sort();
        names
    }
}
