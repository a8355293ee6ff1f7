//! Model names and YAML model configurations.

use swin_umamba::nets::{ModelConfig, ModelName, NetsError};

#[test]
fn model_names_round_trip() {
    for name in ModelName::ALL {
        let parsed: ModelName = name.as_str().parse().unwrap();
        assert_eq!(parsed, name);
    }
    let error = "swin-unet".parse::<ModelName>().unwrap_err();
    assert!(matches!(error, NetsError::UnknownModel { .. }), "{error}");
}

#[test]
fn yaml_overrides_keep_other_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.yaml");
    std::fs::write(&path, "depths: [1, 1, 2, 1]\n").unwrap();

    let ModelConfig::SwinUMamba(v1) = ModelName::SwinUMambaV1.read_config(&path).unwrap() else {
        panic!("swin-umamba-v1 must read a SwinUMamba config");
    };
    assert_eq!(v1.depths, vec![1, 1, 2, 1]);
    assert_eq!(
        v1.feat_size,
        vec![48, 96, 192, 384],
        "v1 keeps four feature sizes"
    );

    let ModelConfig::SwinUMamba(current) = ModelName::SwinUMamba.read_config(&path).unwrap() else {
        panic!("swin-umamba must read a SwinUMamba config");
    };
    assert_eq!(current.feat_size, vec![48, 96, 192, 384, 768]);
    assert_eq!(current.hidden_size, 768);
}

#[test]
fn yaml_unknown_field_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.yaml");
    std::fs::write(&path, "dim: [8, 16]\n").unwrap();
    let error = ModelName::SwinUMambaD.read_config(&path).unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, NetsError::ConfigYaml { .. }), "{message}");
    assert!(
        message.contains("model.yaml"),
        "the message names the file: {message}"
    );
    assert!(
        message.contains("dim"),
        "the message names the field: {message}"
    );
}

#[test]
fn yaml_round_trips_resolved_config() {
    for name in ModelName::ALL {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("resolved.yaml");
        let config = name.default_config();
        std::fs::write(&path, config.to_yaml()).unwrap();
        assert_eq!(name.read_config(&path).unwrap(), config, "{name}");
    }
}
