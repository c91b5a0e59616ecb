//! Store paths: `/nix/store/<32 nixbase32 chars>-<name>`.

use std::fmt;

/// The store directory. nixvm-gen only reads paths of the default store.
pub const STORE_DIR: &str = "/nix/store";

/// Length of the hash part (160 bits in Nix's base-32).
pub const HASH_LEN: usize = 32;

/// Longest name Nix accepts (`StorePath` in libstore: 211 bytes).
pub const NAME_MAX_LEN: usize = 211;

/// Nix's base-32 alphabet: digits and lowercase letters without e, o, u, t.
const NIXBASE32: &[u8] = b"0123456789abcdfghijklmnpqrsvwxyz";

/// Why a string is not a store path. Offsets are byte offsets into the
/// string that was parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StorePathError {
    #[error("`{path}` is not in {STORE_DIR}")]
    NotInStore { path: String },
    #[error("the hash part is {found} characters long; store paths have {HASH_LEN}")]
    HashLength { found: usize },
    #[error(
        "invalid character {found:?} in the hash part at byte {offset} (Nix's base-32 has no e, o, u, t)"
    )]
    HashChar { offset: usize, found: char },
    #[error("missing `-` between the hash and the name at byte {offset}")]
    MissingDash { offset: usize },
    #[error("the name is empty")]
    EmptyName,
    #[error("the name is {found} bytes long; at most {NAME_MAX_LEN} are allowed")]
    NameTooLong { found: usize },
    #[error("the name starts with `.`")]
    NameStartsWithDot,
    #[error("invalid character {found:?} in the name at byte {offset} (allowed: A-Z a-z 0-9 + - . _ ? =)")]
    NameChar { offset: usize, found: char },
}

/// A validated store path, e.g. `/nix/store/7pqq…ly75-vm-test-run-health.drv`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StorePath {
    hash: String,
    name: String,
}

impl StorePath {
    /// Parses `<hash>-<name>` (the base name of a store path).
    pub fn from_base_name(s: &str) -> Result<StorePath, StorePathError> {
        Self::parse_at(s, 0)
    }

    /// Parses an absolute path `/nix/store/<hash>-<name>` (nothing after it).
    pub fn from_absolute_path(s: &str) -> Result<StorePath, StorePathError> {
        let rest = strip_store_dir(s).ok_or_else(|| StorePathError::NotInStore { path: s.to_string() })?;
        Self::parse_at(rest, STORE_DIR.len() + 1)
    }

    /// Splits `/nix/store/<hash>-<name>/sub/path` into the store path and
    /// `sub/path` (empty when there is none). Used for `start_script`s and
    /// other paths *inside* an output.
    pub fn from_absolute_path_prefix(s: &str) -> Result<(StorePath, &str), StorePathError> {
        let rest = strip_store_dir(s).ok_or_else(|| StorePathError::NotInStore { path: s.to_string() })?;
        let (base, sub) = rest.split_once('/').unwrap_or((rest, ""));
        Ok((Self::parse_at(base, STORE_DIR.len() + 1)?, sub))
    }

    /// `offset` is where `s` starts in the caller's string, for error offsets.
    fn parse_at(s: &str, offset: usize) -> Result<StorePath, StorePathError> {
        let bytes = s.as_bytes();
        // Without a dash at HASH_LEN the name cannot be located.
        match bytes.iter().position(|&b| b == b'-') {
            Some(HASH_LEN) => {}
            Some(dash) if dash < HASH_LEN => return Err(StorePathError::HashLength { found: dash }),
            None if bytes.len() < HASH_LEN => {
                return Err(StorePathError::HashLength { found: bytes.len() });
            }
            _ => return Err(StorePathError::MissingDash { offset: offset + HASH_LEN }),
        }
        // The hash part is ASCII-checked byte by byte, so slicing is safe.
        for (i, &b) in bytes[..HASH_LEN].iter().enumerate() {
            if !NIXBASE32.contains(&b) {
                let found = s[i..].chars().next().unwrap_or('\u{fffd}');
                return Err(StorePathError::HashChar { offset: offset + i, found });
            }
        }
        let name = &s[HASH_LEN + 1..];
        validate_name(name, offset + HASH_LEN + 1)?;
        Ok(StorePath { hash: s[..HASH_LEN].to_string(), name: name.to_string() })
    }

    /// The 32-character hash part.
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// The name after the dash (`vm-test-run-health.drv`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `<hash>-<name>`.
    pub fn base_name(&self) -> String {
        format!("{}-{}", self.hash, self.name)
    }

    /// Whether this is a derivation file (`.drv`).
    pub fn is_derivation(&self) -> bool {
        self.name.ends_with(".drv")
    }

    /// The name without `.drv` for derivations (the derivation's `name`).
    pub fn derivation_name(&self) -> &str {
        self.name.strip_suffix(".drv").unwrap_or(&self.name)
    }
}

impl fmt::Display for StorePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{STORE_DIR}/{}-{}", self.hash, self.name)
    }
}

impl std::str::FromStr for StorePath {
    type Err = StorePathError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        StorePath::from_absolute_path(s)
    }
}

impl serde::Serialize for StorePath {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

fn strip_store_dir(s: &str) -> Option<&str> {
    s.strip_prefix(STORE_DIR)?.strip_prefix('/')
}

/// Nix's rules for the name part (libstore `checkName`).
fn validate_name(name: &str, offset: usize) -> Result<(), StorePathError> {
    if name.is_empty() {
        return Err(StorePathError::EmptyName);
    }
    if name.len() > NAME_MAX_LEN {
        return Err(StorePathError::NameTooLong { found: name.len() });
    }
    if name.starts_with('.') {
        return Err(StorePathError::NameStartsWithDot);
    }
    for (i, c) in name.char_indices() {
        if !(c.is_ascii_alphanumeric() || "+-._?=".contains(c)) {
            return Err(StorePathError::NameChar { offset: offset + i, found: c });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "7pqqmv3mikj6jzlrkqw70fryc5skly75";

    #[test]
    fn parses_absolute_paths() {
        let p = StorePath::from_absolute_path(&format!("/nix/store/{HASH}-vm-test-run-health.drv")).unwrap();
        assert_eq!(p.hash(), HASH);
        assert_eq!(p.name(), "vm-test-run-health.drv");
        assert!(p.is_derivation());
        assert_eq!(p.derivation_name(), "vm-test-run-health");
        assert_eq!(p.to_string(), format!("/nix/store/{HASH}-vm-test-run-health.drv"));
    }

    #[test]
    fn splits_paths_inside_outputs() {
        let path = format!("/nix/store/{HASH}-nixos-vm/bin/run-machine-vm");
        let (p, sub) = StorePath::from_absolute_path_prefix(&path).unwrap();
        assert_eq!(p.name(), "nixos-vm");
        assert_eq!(sub, "bin/run-machine-vm");
    }

    #[test]
    fn rejects_bad_paths_with_offsets() {
        use StorePathError::*;
        let cases: &[(&str, StorePathError)] = &[
            ("/tmp/x", NotInStore { path: "/tmp/x".into() }),
            ("/nix/store/abc-x", HashLength { found: 3 }),
            ("/nix/store/epqqmv3mikj6jzlrkqw70fryc5skly75-x", HashChar { offset: 11, found: 'e' }),
            ("/nix/store/7pqqmv3mikj6jzlrkqw70fryc5skly75", MissingDash { offset: 43 }),
            ("/nix/store/7pqqmv3mikj6jzlrkqw70fryc5skly75-", EmptyName),
            ("/nix/store/7pqqmv3mikj6jzlrkqw70fryc5skly75-.x", NameStartsWithDot),
            ("/nix/store/7pqqmv3mikj6jzlrkqw70fryc5skly75-a b", NameChar { offset: 45, found: ' ' }),
            ("/nix/store/7pqqmv3mikj6jzlrkqw70fryc5skly75-a/b", NameChar { offset: 45, found: '/' }),
        ];
        for (input, expected) in cases {
            assert_eq!(&StorePath::from_absolute_path(input).unwrap_err(), expected, "{input}");
        }
        let long = format!("/nix/store/{HASH}-{}", "a".repeat(212));
        assert_eq!(StorePath::from_absolute_path(&long).unwrap_err(), NameTooLong { found: 212 });
        assert!(StorePath::from_absolute_path(&format!("/nix/store/{HASH}-{}", "a".repeat(211))).is_ok());
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in "\\PC*") {
            let _ = StorePath::from_absolute_path(&s);
            let _ = StorePath::from_absolute_path_prefix(&s);
            let _ = StorePath::from_base_name(&s);
        }

        #[test]
        fn valid_paths_round_trip(hash in "[0-9a-dfgh-np-sv-z]{32}", name in "[A-Za-z0-9+_?=-][A-Za-z0-9+._?=-]{0,40}") {
            let s = format!("/nix/store/{hash}-{name}");
            let p = StorePath::from_absolute_path(&s).unwrap();
            proptest::prop_assert_eq!(p.to_string(), s);
        }
    }
}
