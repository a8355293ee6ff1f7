//! Model names and typed model configurations (YAML, read with `serde_yaml_ng`).

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::plain_unet::PlainUNetConfig;
use super::swin_umamba::SwinUMambaConfig;
use super::swin_umamba_d::SwinUMambaDConfig;
use super::umamba::UMambaConfig;
use super::NetsError;

/// The model names, the same in every command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ModelName {
    #[serde(rename = "swin-umamba")]
    SwinUMamba,
    #[serde(rename = "swin-umamba-v1")]
    SwinUMambaV1,
    #[serde(rename = "swin-umamba-d")]
    SwinUMambaD,
    #[serde(rename = "nnunet")]
    Nnunet,
    #[serde(rename = "umamba-bot")]
    UmambaBot,
    #[serde(rename = "umamba-enc")]
    UmambaEnc,
}

impl ModelName {
    pub const ALL: [ModelName; 6] = [
        ModelName::SwinUMamba,
        ModelName::SwinUMambaV1,
        ModelName::SwinUMambaD,
        ModelName::Nnunet,
        ModelName::UmambaBot,
        ModelName::UmambaEnc,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ModelName::SwinUMamba => "swin-umamba",
            ModelName::SwinUMambaV1 => "swin-umamba-v1",
            ModelName::SwinUMambaD => "swin-umamba-d",
            ModelName::Nnunet => "nnunet",
            ModelName::UmambaBot => "umamba-bot",
            ModelName::UmambaEnc => "umamba-enc",
        }
    }

    /// Returns the official default configuration of this model.
    pub fn default_config(self) -> ModelConfig {
        match self {
            ModelName::SwinUMamba => ModelConfig::SwinUMamba(SwinUMambaConfig::default()),
            ModelName::SwinUMambaV1 => ModelConfig::SwinUMamba(SwinUMambaConfig::v1()),
            ModelName::SwinUMambaD => ModelConfig::SwinUMambaD(SwinUMambaDConfig::default()),
            ModelName::Nnunet => ModelConfig::PlainUNet(PlainUNetConfig::default()),
            ModelName::UmambaBot | ModelName::UmambaEnc => {
                ModelConfig::UMamba(UMambaConfig::default())
            }
        }
    }

    /// Reads this model's configuration from a YAML file; fields left out keep the
    /// official defaults, unknown fields are rejected.
    pub fn read_config(self, path: &Path) -> Result<ModelConfig, NetsError> {
        let text = std::fs::read_to_string(path).map_err(|source| NetsError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let yaml = |source| NetsError::ConfigYaml {
            path: path.to_path_buf(),
            source,
        };
        Ok(match self {
            ModelName::SwinUMamba | ModelName::SwinUMambaV1 => {
                let value: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).map_err(yaml)?;
                let sets_feat_size = value.get("feat_size").is_some();
                let mut config: SwinUMambaConfig =
                    serde_yaml_ng::from_value(value).map_err(yaml)?;
                // The v1 default has four feature sizes; keep it unless the file sets them.
                if self == ModelName::SwinUMambaV1 && !sets_feat_size {
                    config.feat_size = SwinUMambaConfig::v1().feat_size;
                }
                ModelConfig::SwinUMamba(config)
            }
            ModelName::SwinUMambaD => {
                ModelConfig::SwinUMambaD(serde_yaml_ng::from_str(&text).map_err(yaml)?)
            }
            ModelName::Nnunet => {
                ModelConfig::PlainUNet(serde_yaml_ng::from_str(&text).map_err(yaml)?)
            }
            ModelName::UmambaBot | ModelName::UmambaEnc => {
                ModelConfig::UMamba(serde_yaml_ng::from_str(&text).map_err(yaml)?)
            }
        })
    }
}

impl fmt::Display for ModelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ModelName {
    type Err = NetsError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ModelName::ALL
            .into_iter()
            .find(|name| name.as_str() == s)
            .ok_or_else(|| NetsError::UnknownModel {
                name: s.to_string(),
            })
    }
}

/// The architecture arguments of one model family.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ModelConfig {
    SwinUMamba(SwinUMambaConfig),
    SwinUMambaD(SwinUMambaDConfig),
    PlainUNet(PlainUNetConfig),
    UMamba(UMambaConfig),
}

impl ModelConfig {
    /// Serialises the configuration as YAML, for writing next to checkpoints.
    pub fn to_yaml(&self) -> String {
        serde_yaml_ng::to_string(self).expect("model configs serialise to YAML")
    }
}
