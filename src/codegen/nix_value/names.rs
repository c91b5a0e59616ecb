//! Attribute names of a [`super::tree::Tree`]: each as given (for Nix's
//! order) and as Nix writes it, with its width.
//!
//! Struct fields and enum variants are named by `&'static str`: those are
//! checked, escaped and measured once per thread and found again by their
//! address, not copied into every tree (a plan names three to six of them
//! per step). Map keys are the tree's own, dropped with it.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use super::super::escape::{is_nix_identifier, push_nix_string};

/// A name: [`NameId::NONE`], a static name (high bit set) or one of the
/// tree's own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NameId(u32);

impl NameId {
    /// The node is not an attribute.
    pub const NONE: NameId = NameId(u32::MAX);
    const STATIC: u32 = 1 << 31;

    pub fn is_none(self) -> bool {
        self == NameId::NONE
    }
}

struct StaticName {
    raw: &'static str,
    /// [`prefix`] of `raw`.
    prefix: u64,
    nix: Cow<'static, str>,
    width: u32,
}

/// Offsets into [`Names::text`].
struct OwnName {
    raw: (u32, u32),
    prefix: u64,
    nix: (u32, u32),
    width: u32,
}

pub struct Names {
    statics: Vec<StaticName>,
    /// Static names by address and length.
    by_address: HashMap<(usize, usize), u32, BuildHasherDefault<AddressHasher>>,
    /// The last static name (address, length, index) seen in each slot of a
    /// hash of its address: most lookups end here.
    recent: Box<[(usize, usize, u32); RECENT]>,
    own: Vec<OwnName>,
    text: String,
}

const RECENT: usize = 64;

impl Default for Names {
    fn default() -> Names {
        Names {
            statics: Vec::new(),
            by_address: HashMap::default(),
            // No name is `usize::MAX` bytes long.
            recent: Box::new([(0, usize::MAX, 0); RECENT]),
            own: Vec::new(),
            text: String::new(),
        }
    }
}

impl Names {
    /// Forgets the tree's own names (static ones stay).
    pub fn clear_own(&mut self) {
        self.own.clear();
        self.text.clear();
    }

    pub fn of_static(&mut self, name: &'static str) -> NameId {
        let key = (name.as_ptr() as usize, name.len());
        let slot = ((key.0 as u64 ^ (key.1 as u64).rotate_right(16)).wrapping_mul(0x9e37_79b9_7f4a_7c15)
            >> 58) as usize;
        let (address, len, i) = self.recent[slot];
        if (address, len) == key {
            return NameId(i | NameId::STATIC);
        }
        if let Some(&i) = self.by_address.get(&key) {
            self.recent[slot] = (key.0, key.1, i);
            return NameId(i | NameId::STATIC);
        }
        let nix = if is_nix_identifier(name) {
            Cow::Borrowed(name)
        } else {
            let mut quoted = String::new();
            push_nix_string(&mut quoted, name);
            Cow::Owned(quoted)
        };
        let width = char_width(&nix);
        let i = u32::try_from(self.statics.len()).expect("fewer static names than 2^31");
        assert!(i < NameId::STATIC, "fewer static names than 2^31");
        self.statics.push(StaticName { raw: name, prefix: prefix(name.as_bytes()), nix, width });
        self.by_address.insert(key, i);
        self.recent[slot] = (key.0, key.1, i);
        NameId(i | NameId::STATIC)
    }

    pub fn of_own(&mut self, name: &str) -> NameId {
        let start = self.text.len();
        self.text.push_str(name);
        let raw = (to_u32(start), to_u32(self.text.len()));
        let nix = if is_nix_identifier(name) {
            raw
        } else {
            let start = self.text.len();
            push_nix_string(&mut self.text, name);
            (to_u32(start), to_u32(self.text.len()))
        };
        let width = char_width(&self.text[nix.0 as usize..nix.1 as usize]);
        let i = to_u32(self.own.len());
        assert!(i < NameId::STATIC, "fewer names than 2^31");
        self.own.push(OwnName { raw, prefix: prefix(name.as_bytes()), nix, width });
        NameId(i)
    }

    /// Compares names as given (attribute sets are ordered by their
    /// bytes), mostly by their first eight bytes.
    pub fn cmp(&self, a: NameId, b: NameId) -> Ordering {
        if a == b {
            return Ordering::Equal;
        }
        let (pa, pb) = (self.prefix(a), self.prefix(b));
        if pa != pb {
            return pa.cmp(&pb);
        }
        self.raw(a).cmp(self.raw(b))
    }

    fn prefix(&self, id: NameId) -> u64 {
        if id.0 & NameId::STATIC != 0 {
            self.statics[(id.0 & !NameId::STATIC) as usize].prefix
        } else {
            self.own[id.0 as usize].prefix
        }
    }

    /// The name as given.
    fn raw(&self, id: NameId) -> &[u8] {
        if id.0 & NameId::STATIC != 0 {
            self.statics[(id.0 & !NameId::STATIC) as usize].raw.as_bytes()
        } else {
            let (from, to) = self.own[id.0 as usize].raw;
            &self.text.as_bytes()[from as usize..to as usize]
        }
    }

    /// The name as Nix writes it.
    pub fn nix(&self, id: NameId) -> &str {
        if id.0 & NameId::STATIC != 0 {
            &self.statics[(id.0 & !NameId::STATIC) as usize].nix
        } else {
            let (from, to) = self.own[id.0 as usize].nix;
            &self.text[from as usize..to as usize]
        }
    }

    /// Characters of [`Names::nix`].
    pub fn width(&self, id: NameId) -> u32 {
        if id.0 & NameId::STATIC != 0 {
            self.statics[(id.0 & !NameId::STATIC) as usize].width
        } else {
            self.own[id.0 as usize].width
        }
    }
}

/// The first eight bytes (zero-padded) as a big-endian number: different
/// prefixes order two names as their bytes do (padding sorts a shorter
/// name first, as it is); equal ones leave it to the bytes.
fn prefix(raw: &[u8]) -> u64 {
    let mut bytes = [0u8; 8];
    let n = raw.len().min(8);
    bytes[..n].copy_from_slice(&raw[..n]);
    u64::from_be_bytes(bytes)
}

/// Characters of `s` (saturating).
pub fn char_width(s: &str) -> u32 {
    let n = if s.is_ascii() { s.len() } else { s.chars().count() };
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Names and trees index text with u32: a plan is far below 4 GiB.
pub fn to_u32(n: usize) -> u32 {
    u32::try_from(n).expect("a value of less than 4 GiB")
}

/// Fx-style hashing of an address and a length: no hashing of the name's
/// bytes, no per-process seed.
#[derive(Default)]
struct AddressHasher(u64);

impl Hasher for AddressHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_names_are_kept_once_and_own_names_are_cleared() {
        let mut names = Names::default();
        let a = names.of_static("steps");
        let b = names.of_static("my key");
        assert_eq!(names.of_static("steps"), a);
        assert_eq!((names.nix(a), names.width(a)), ("steps", 5));
        assert_eq!((names.nix(b), names.raw(b)), ("\"my key\"", &b"my key"[..]));
        let own = names.of_own("if");
        assert_eq!((names.nix(own), names.raw(own), names.width(own)), ("\"if\"", &b"if"[..], 4));
        names.clear_own();
        let again = names.of_own("é");
        assert_eq!((names.nix(again), names.width(again)), ("\"é\"", 3));
        assert_eq!(names.nix(a), "steps");
    }

    #[test]
    fn names_compare_as_their_bytes() {
        let mut names = Names::default();
        let words = ["", "a", "ab", "ab\0", "ab\u{1}", "abcdefgh", "abcdefghi", "abcdefgh\0", "b", "é", "z"];
        let ids: Vec<NameId> = words.iter().map(|w| names.of_own(w)).collect();
        for (i, &a) in ids.iter().enumerate() {
            for (j, &b) in ids.iter().enumerate() {
                assert_eq!(names.cmp(a, b), words[i].as_bytes().cmp(words[j].as_bytes()), "{i} {j}");
            }
        }
        let (own, fixed) = (names.of_own("steps"), names.of_static("steps"));
        assert_eq!(names.cmp(own, fixed), Ordering::Equal);
    }
}
