//! The `model-info` and `forward` subcommands.
