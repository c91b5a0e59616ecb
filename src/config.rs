//! Where things are: the flake, its descriptions and the generated file.

use std::path::PathBuf;

/// Default path of the generated checks file, relative to the flake root.
pub const DEFAULT_OUTPUT: &str = "nix/checks.generated.nix";
/// Default name of nixvm-gen's flake among the user's flake inputs.
pub const DEFAULT_INPUT_NAME: &str = "nixvm-gen";

/// Settings shared by every subcommand.
#[derive(Clone, Debug)]
pub struct Config {
    /// Flake root (the directory holding `flake.nix`).
    pub flake_dir: PathBuf,
    /// Directory of description files, relative to the flake root.
    pub tests_dir: PathBuf,
    /// Generated file, relative to the flake root.
    pub output: PathBuf,
    /// Name under which the user's flake has nixvm-gen as an input.
    pub input_name: String,
}

impl Config {
    pub fn new(flake_dir: impl Into<PathBuf>) -> Self {
        Config {
            flake_dir: flake_dir.into(),
            tests_dir: PathBuf::from(crate::spec::DEFAULT_TESTS_DIR),
            output: PathBuf::from(DEFAULT_OUTPUT),
            input_name: DEFAULT_INPUT_NAME.to_string(),
        }
    }
    /// Absolute (or cwd-relative) path of the generated file.
    pub fn output_path(&self) -> PathBuf {
        self.flake_dir.join(&self.output)
    }
}
