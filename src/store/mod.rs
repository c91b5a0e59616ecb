//! Nix's own formats: store paths and ATerm `.drv` files. Kept small and
//! tested against files real Nix writes (crates.io only has a placeholder of
//! `nix-compat`).

pub mod derivation;
mod path;
pub mod vm_test;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use derivation::{Derivation, DerivationError, Output};
pub use path::{HASH_LEN, NAME_MAX_LEN, STORE_DIR, StorePath, StorePathError};
pub use vm_test::{VmTest, VmTestError};

/// Failure reading a derivation closure from disk.
#[derive(Debug, thiserror::Error)]
pub enum ClosureError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: DerivationError,
    },
    #[error("{path} is not a derivation (.drv) path")]
    NotADerivation { path: String },
}

/// A derivation and every derivation it depends on, read from `.drv` files.
#[derive(Debug, Clone)]
pub struct Closure {
    pub root: StorePath,
    pub derivations: BTreeMap<StorePath, Derivation>,
}

impl Closure {
    /// Reads `root` and its input derivations from the store at `/nix/store`.
    pub fn read(root: &StorePath) -> Result<Closure, ClosureError> {
        Self::read_from(Path::new(STORE_DIR), root)
    }

    /// Same, with the `.drv` files looked up by base name in `dir` (a copy
    /// of the store, e.g. test fixtures).
    pub fn read_from(dir: &Path, root: &StorePath) -> Result<Closure, ClosureError> {
        let mut derivations = BTreeMap::new();
        let mut todo = vec![root.clone()];
        while let Some(drv_path) = todo.pop() {
            if derivations.contains_key(&drv_path) {
                continue;
            }
            if !drv_path.is_derivation() {
                return Err(ClosureError::NotADerivation { path: drv_path.to_string() });
            }
            let file = dir.join(drv_path.base_name());
            let bytes =
                std::fs::read(&file).map_err(|source| ClosureError::Read { path: file.clone(), source })?;
            let drv =
                Derivation::parse(&bytes).map_err(|source| ClosureError::Parse { path: file, source })?;
            todo.extend(drv.input_derivations.keys().filter(|p| !derivations.contains_key(*p)).cloned());
            derivations.insert(drv_path, drv);
        }
        Ok(Closure { root: root.clone(), derivations })
    }

    /// The root derivation.
    pub fn root_derivation(&self) -> Option<&Derivation> {
        self.derivations.get(&self.root)
    }

    /// The derivation (and output name) that produces `output`.
    pub fn producer_of(&self, output: &StorePath) -> Option<(&StorePath, &str, &Derivation)> {
        self.derivations.iter().find_map(|(p, d)| {
            d.outputs
                .iter()
                .find(|(_, o)| o.path.as_ref() == Some(output))
                .map(|(name, _)| (p, name.as_str(), d))
        })
    }

    /// Derivations whose `name` is exactly `name`.
    pub fn named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = (&'a StorePath, &'a Derivation)> + 'a {
        self.derivations.iter().filter(move |(_, d)| d.name() == Some(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixtures() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/drv")
    }

    /// Every `.drv` under tests/fixtures/drv was written by real Nix; its
    /// `.drv.json` is `nix show-derivation` of it.
    fn real_drvs() -> Vec<(StorePath, Vec<u8>, serde_json::Value)> {
        let mut all = Vec::new();
        for entry in std::fs::read_dir(fixtures()).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_str().unwrap().to_string();
            if !name.ends_with(".drv") {
                continue;
            }
            let json_path = path.with_file_name(format!("{name}.json"));
            let json: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(json_path).unwrap()).unwrap();
            all.push((StorePath::from_base_name(&name).unwrap(), std::fs::read(&path).unwrap(), json));
        }
        assert!(all.len() >= 3, "fixtures missing; run tests/fixtures/drv/regen.sh");
        all
    }

    #[test]
    fn real_drv_files_match_nix_show_derivation() {
        for (path, bytes, json) in real_drvs() {
            let drv = Derivation::parse(&bytes).unwrap_or_else(|e| panic!("{path}: {e}"));
            pretty_assertions::assert_eq!(drv.to_show_derivation_json(), json[path.to_string()], "{path}");
            assert_eq!(drv.to_aterm().as_bytes(), &bytes[..], "{path} does not round-trip");
        }
    }

    #[test]
    fn reads_a_closure_from_a_directory() {
        let root = StorePath::from_base_name("s035vssfckynq057gs0q13vgr8zl3fbs-escapes.drv").unwrap();
        let closure = Closure::read_from(&fixtures(), &root).unwrap();
        let names: Vec<_> = closure.derivations.values().filter_map(Derivation::name).collect();
        assert_eq!(names, ["dep", "escapes"]);
        let dev =
            StorePath::from_absolute_path("/nix/store/giddfpg2wjji054j275nrli5vhvm5qsc-dep-dev").unwrap();
        let (_, output, drv) = closure.producer_of(&dev).unwrap();
        assert_eq!((output, drv.name()), ("dev", Some("dep")));
    }

    #[test]
    fn missing_closure_member_is_an_error_naming_the_file() {
        let root = StorePath::from_base_name("s035vssfckynq057gs0q13vgr8zl3fbs-escapes.drv").unwrap();
        let err = Closure::read_from(Path::new("/nonexistent"), &root).unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/s035vssfckynq057gs0q13vgr8zl3fbs-escapes.drv"),
            "{err}"
        );
    }

    proptest::proptest! {
        /// Mutations of real files: any byte, any truncation, never a panic.
        #[test]
        fn never_panics_on_mutated_real_files(
            which in 0usize..3,
            edits in proptest::collection::vec((proptest::num::usize::ANY, proptest::num::u8::ANY), 1..6),
            cut in proptest::num::usize::ANY,
        ) {
            let drvs = real_drvs();
            let mut bytes = drvs[which % drvs.len()].1.clone();
            for (at, b) in edits {
                let at = at % bytes.len();
                bytes[at] = b;
            }
            let _ = Derivation::parse(&bytes);
            let _ = Derivation::parse(&bytes[..cut % (bytes.len() + 1)]);
        }
    }
}
