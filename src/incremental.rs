//! Incremental `check` and `generate` (issue 16): a description whose
//! inputs did not change since the last run is neither parsed nor rendered
//! again; its test block and the little the cross-file checks need come
//! from the [`cache`](crate::cache).
//!
//! The unit is one description. Its record's key is a BLAKE3 hash of
//! everything its parse and its block depend on: the description's path and
//! bytes, the flake's analysed modules (which modules a node imports), the
//! generated file's directory (import paths) and the input name; the pack
//! as a whole is tied to the schema and the build ([`crate::cache`]). What
//! depends on all descriptions together (duplicate names, unknown modules,
//! the systems' lists, the header) is computed again on every run from the
//! records, by the same code as the cold path ([`crate::project::load`],
//! [`crate::codegen::render_with`]); the flake itself is analysed on every
//! run (one small file: cheaper than deciding whether it changed).
//!
//! A description with any diagnostic gets no record: it is parsed on every
//! run, so its diagnostics are always produced by the parser itself and
//! never replayed from a file. A description that parses cleanly but whose
//! block was not rendered (another file had an error) gets a record without
//! a block; when a block is needed it is parsed again.
//!
//! `tests/integration/incremental.rs` checks with random edits that this
//! path gives the cold path's output and diagnostics byte for byte.

use std::path::{Path, PathBuf};

use crate::cache::{Key, Pack, Reader, Rejected, Store, Writer};
use crate::codegen::CodegenError;
use crate::codegen::model::{self, Entry, Settings, TestBlock};
use crate::config::Config;
use crate::diagnostic::{Diagnostic, FileId, Sources, Span};
use crate::flake::{self, FlakeInfo};
use crate::project::{self, ProjectError};
use crate::spec::{self, TestSpec, validate::TestHead};

/// One loaded project on the incremental path.
pub struct Run {
    pub flake: FlakeInfo,
    pub sources: Sources,
    /// In the order [`project::load`] gives them.
    pub diagnostics: Vec<Diagnostic>,
    units: Vec<Unit>,
    store: Option<(Store, PathBuf)>,
    pack: Pack,
}

/// One description.
struct Unit {
    key: Key,
    file: FileId,
    rel: PathBuf,
    /// Its parse found problems: it gets no record.
    diagnosed: bool,
    head: Option<TestHead>,
    /// Parsed in this run (with implicit nodes filled in).
    spec: Option<TestSpec>,
    block: Option<Block>,
    /// The record came from the pack and nothing was added to it.
    reused: bool,
}

/// A unit's block: where it is in the pack (checked to be UTF-8 when the
/// record was read; not copied, the pack is most of the file), or rendered
/// in this run.
enum Block {
    Packed { range: std::ops::Range<usize>, evaluated: bool },
    Fresh(TestBlock),
}

/// How much was reused, for `--verbose`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub descriptions: usize,
    /// Descriptions not parsed in this run.
    pub reused: usize,
    /// Descriptions with diagnostics (never cached).
    pub diagnosed: usize,
    /// Why the pack on disk was not used, if it was not.
    pub rejected: Option<Rejected>,
}

/// Loads the project like [`project::load`], taking what it can from the
/// cache in `store` (none: a cold run that writes nothing).
pub fn load(config: &Config, store: Option<Store>) -> Result<Run, ProjectError> {
    let mut sources = Sources::default();
    let (flake, mut diagnostics) = flake::analyze(&config.flake_dir, &mut sources)?;
    let store = store.map(|s| {
        let path = s.pack_path(&config.flake_dir);
        (s, path)
    });
    let pack = match &store {
        Some((s, path)) => s.read(path),
        None => Pack::default(),
    };
    let context = context_key(config, &flake);
    let mut units = Vec::new();
    for rel in project::discover(config, &flake)? {
        let text = project::read_description(config, &rel)?;
        let key = unit_key(&context, &rel, &text);
        let file = sources.add(rel.clone(), text);
        let record = pack.range(&key).and_then(|at| {
            let (head, block) = decode(&pack.bytes()[at.clone()], file, sources.text(file))?;
            let block = block.map(|(range, evaluated)| Block::Packed {
                range: at.start + range.start..at.start + range.end,
                evaluated,
            });
            Some((head, block))
        });
        let reused = record.is_some();
        let (head, block) = record.unwrap_or((None, None));
        units.push(Unit { key, file, rel, diagnosed: false, head, spec: None, block, reused });
    }
    let todo: Vec<usize> = (0..units.len()).filter(|&i| !units[i].reused).collect();
    let inputs: Vec<_> =
        todo.iter().map(|&i| (units[i].file, units[i].rel.as_path(), sources.text(units[i].file))).collect();
    let mut results: Vec<Option<(Option<TestSpec>, Vec<Diagnostic>)>> = units.iter().map(|_| None).collect();
    for (&i, result) in todo.iter().zip(spec::parse::parse_many(&inputs)) {
        results[i] = Some(result);
    }
    // Diagnostics in file order, as the cold path has them: a reused unit
    // has none.
    for (unit, result) in units.iter_mut().zip(results) {
        let Some((spec, diags)) = result else { continue };
        unit.diagnosed = !diags.is_empty();
        diagnostics.extend(diags);
        unit.head = spec.as_ref().map(TestHead::of);
        unit.spec = spec.map(|mut s| {
            spec::validate::fill_implicit_nodes(&mut s);
            s
        });
    }
    let heads: Vec<TestHead> = units.iter().filter_map(|u| u.head.clone()).collect();
    let checked = project::cross_checks(&heads, &flake, &diagnostics);
    diagnostics.extend(checked);
    Ok(Run { flake, sources, diagnostics, units, store, pack })
}

impl Run {
    pub fn has_errors(&self) -> bool {
        crate::diagnostic::has_errors(&self.diagnostics)
    }

    /// Number of valid descriptions (tests).
    pub fn tests(&self) -> usize {
        self.units.iter().filter(|u| u.head.is_some()).count()
    }

    pub fn stats(&self) -> Stats {
        Stats {
            descriptions: self.units.len(),
            reused: self.units.iter().filter(|u| u.reused).count(),
            diagnosed: self.units.iter().filter(|u| u.diagnosed).count(),
            rejected: self.pack.rejected,
        }
    }

    /// Renders the generated file like [`crate::codegen::render_with`],
    /// rendering only the blocks the cache did not have.
    pub fn render(&mut self, config: &Config, hydra_jobs: bool) -> Result<String, CodegenError> {
        let settings = Settings::new(config)?;
        let mut order: Vec<usize> = (0..self.units.len()).filter(|&i| self.units[i].head.is_some()).collect();
        order.sort_by(|&a, &b| self.units[a].head_name().cmp(self.units[b].head_name()));
        self.reparse(&order);
        for &i in &order {
            let unit = &mut self.units[i];
            if unit.block.is_none() {
                // Only a forged record (right hash, wrong head) gets here.
                let Some(spec) = &unit.spec else {
                    return Err(CodegenError::Unsupported {
                        location: unit.rel.display().to_string(),
                        message: "the cache does not match this description; run again with --no-cache"
                            .to_string(),
                    });
                };
                unit.block =
                    Some(Block::Fresh(model::test_block(spec, &self.flake, &self.sources, &settings)?));
                unit.reused = false;
            }
        }
        let entries: Vec<Entry> = order
            .iter()
            .filter_map(|&i| {
                let unit = &self.units[i];
                let head = unit.head.as_ref()?;
                let (text, evaluated) = self.block_text(unit.block.as_ref()?);
                Some(Entry {
                    name: &head.name,
                    file: &head.file,
                    systems: head.systems.as_deref(),
                    text,
                    evaluated,
                })
            })
            .collect();
        crate::codegen::render_file(&settings, &entries, hydra_jobs)
    }

    fn block_text<'a>(&'a self, block: &'a Block) -> (&'a str, bool) {
        match block {
            // Checked when the record was read; an empty text cannot happen.
            Block::Packed { range, evaluated } => {
                (std::str::from_utf8(&self.pack.bytes()[range.clone()]).unwrap_or_default(), *evaluated)
            }
            Block::Fresh(b) => (&b.text, b.evaluated),
        }
    }

    /// Parses again the units among `order` whose record has no block.
    fn reparse(&mut self, order: &[usize]) {
        let todo: Vec<usize> = order
            .iter()
            .copied()
            .filter(|&i| self.units[i].block.is_none() && self.units[i].spec.is_none())
            .collect();
        if todo.is_empty() {
            return;
        }
        let inputs: Vec<_> = todo
            .iter()
            .map(|&i| {
                (self.units[i].file, self.units[i].rel.as_path(), self.sources.text(self.units[i].file))
            })
            .collect();
        let parsed = spec::parse::parse_many(&inputs);
        for (&i, (spec, _)) in todo.iter().zip(parsed) {
            self.units[i].spec = spec.map(|mut s| {
                spec::validate::fill_implicit_nodes(&mut s);
                s
            });
        }
    }

    /// Writes the records of this run (only when they differ from the
    /// pack's), so the next run can reuse them. Returns whether it wrote.
    pub fn save(&self) -> std::io::Result<bool> {
        let Some((store, path)) = &self.store else { return Ok(false) };
        let records: Vec<(Key, std::borrow::Cow<[u8]>)> = self
            .units
            .iter()
            .filter(|u| !u.diagnosed)
            .map(|u| match self.pack.get(&u.key).filter(|_| u.reused) {
                Some(bytes) => (u.key, std::borrow::Cow::Borrowed(bytes)),
                None => {
                    let block = u.block.as_ref().map(|b| self.block_text(b));
                    (u.key, std::borrow::Cow::Owned(encode(u.head.as_ref(), block)))
                }
            })
            .collect();
        let unchanged = self.pack.rejected.is_none()
            && records.len() == self.pack.len()
            && self.units.iter().filter(|u| !u.diagnosed).all(|u| u.reused);
        if unchanged {
            return Ok(false);
        }
        let records: Vec<(Key, &[u8])> = records.iter().map(|(k, r)| (*k, r.as_ref())).collect();
        store.write(path, &records)?;
        Ok(true)
    }
}

impl Unit {
    fn head_name(&self) -> &str {
        self.head.as_ref().map_or("", |h| h.name.as_str())
    }
}

/// What every unit's record depends on besides its own file.
fn context_key(config: &Config, flake: &FlakeInfo) -> Key {
    let mut h = blake3::Hasher::new();
    h.update(b"nixvm-gen context\0");
    h.update(config.output.as_os_str().as_encoded_bytes());
    h.update(b"\0");
    h.update(config.input_name.as_bytes());
    h.update(b"\0");
    // The modules as analysed: which ones exist, their kinds and aliases.
    let modules = serde_json::to_vec(&flake.modules).unwrap_or_default();
    h.update(&(modules.len() as u64).to_le_bytes());
    h.update(&modules);
    *h.finalize().as_bytes()
}

fn unit_key(context: &Key, rel: &Path, text: &str) -> Key {
    let mut h = blake3::Hasher::new();
    h.update(context);
    let rel = rel.as_os_str().as_encoded_bytes();
    h.update(&(rel.len() as u64).to_le_bytes());
    h.update(rel);
    h.update(text.as_bytes());
    *h.finalize().as_bytes()
}

const HAS_HEAD: u8 = 1;
const HAS_BLOCK: u8 = 2;
const EVALUATED: u8 = 4;

/// A unit's record: flags, the head (spans as offsets into its own file),
/// the block.
fn encode(head: Option<&TestHead>, block: Option<(&str, bool)>) -> Vec<u8> {
    let mut w = Writer::default();
    let block = block.filter(|_| head.is_some());
    let flags = head.map_or(0, |_| HAS_HEAD)
        | block.map_or(0, |_| HAS_BLOCK)
        | block.map_or(0, |(_, evaluated)| if evaluated { EVALUATED } else { 0 });
    w.u8(flags);
    let span = |w: &mut Writer, s: Option<Span>| match s {
        Some(s) => {
            w.u8(1);
            w.u32(s.start);
            w.u32(s.end);
        }
        None => w.u8(0),
    };
    if let Some(h) = head {
        w.str(&h.name);
        span(&mut w, h.name_span);
        span(&mut w, h.any_span);
        w.str(&h.file.to_string_lossy());
        match &h.modules {
            Some(list) => {
                w.u8(1);
                w.u32(list.len() as u32);
                for (name, s) in list {
                    w.str(name);
                    span(&mut w, Some(*s));
                }
            }
            None => w.u8(0),
        }
        match &h.systems {
            Some(list) => {
                w.u8(1);
                w.u32(list.len() as u32);
                list.iter().for_each(|s| w.str(s));
            }
            None => w.u8(0),
        }
    }
    if let Some((text, _)) = block {
        w.str(text);
    }
    w.out
}

/// A record read back: the head, and where the block's text is in the
/// record (with its `evaluated` flag).
type Decoded = (Option<TestHead>, Option<(std::ops::Range<usize>, bool)>);

/// Reads a record back for the unit at `file`; `None` (the unit is parsed
/// again) when anything is out of place: spans must lie in the file's text
/// on character boundaries, the block must be UTF-8.
fn decode(bytes: &[u8], file: FileId, text: &str) -> Option<Decoded> {
    let mut r = Reader::new(bytes);
    let flags = r.u8()?;
    if flags & !(HAS_HEAD | HAS_BLOCK | EVALUATED) != 0 || (flags & HAS_HEAD == 0 && flags != 0) {
        return None;
    }
    let span = |r: &mut Reader| -> Option<Option<Span>> {
        match r.u8()? {
            0 => Some(None),
            1 => {
                let (start, end) = (r.u32()?, r.u32()?);
                let ok = start <= end
                    && text.is_char_boundary(start as usize)
                    && text.is_char_boundary(end as usize);
                ok.then_some(Some(Span { file, start, end }))
            }
            _ => None,
        }
    };
    let count = |r: &mut Reader| -> Option<Option<usize>> {
        match r.u8()? {
            0 => Some(None),
            // Each item takes at least four bytes.
            1 => r.u32().map(|n| n as usize).filter(|&n| n <= bytes.len() / 4).map(Some),
            _ => None,
        }
    };
    let head = if flags & HAS_HEAD != 0 {
        let name = r.str()?.to_string();
        let name_span = span(&mut r)?;
        let any_span = span(&mut r)?;
        let file_name = PathBuf::from(r.str()?);
        let modules = match count(&mut r)? {
            Some(n) => {
                let mut list = Vec::with_capacity(n);
                for _ in 0..n {
                    list.push((r.str()?.to_string(), span(&mut r)??));
                }
                Some(list)
            }
            None => None,
        };
        let systems = match count(&mut r)? {
            Some(n) => Some((0..n).map(|_| r.str().map(str::to_string)).collect::<Option<Vec<_>>>()?),
            None => None,
        };
        Some(TestHead { name, name_span, file: file_name, any_span, modules, systems })
    } else {
        None
    };
    let block = if flags & HAS_BLOCK != 0 {
        let block = r.str()?;
        Some((r.pos - block.len()..r.pos, flags & EVALUATED != 0))
    } else {
        None
    };
    r.at_end().then_some((head, block))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head() -> TestHead {
        let file = FileId(3);
        TestHead {
            name: "t".into(),
            name_span: Some(Span { file, start: 2, end: 5 }),
            file: "tests/vm/t.nix".into(),
            any_span: None,
            modules: Some(vec![("svc".into(), Span { file, start: 6, end: 9 })]),
            systems: Some(vec!["x86_64-linux".into()]),
        }
    }

    #[test]
    fn records_round_trip() {
        let text = "{ name = \"t\"; }";
        let block = TestBlock { text: "    t =\n      pkgs: x;".into(), evaluated: true };
        for (h, b) in [(Some(head()), Some(&block)), (Some(head()), None), (None, None)] {
            let bytes = encode(h.as_ref(), b.map(|b| (b.text.as_str(), b.evaluated)));
            let (head, packed) = decode(&bytes, FileId(3), text).expect("decodes");
            let block = packed.map(|(range, evaluated)| TestBlock {
                text: String::from_utf8(bytes[range].to_vec()).unwrap(),
                evaluated,
            });
            assert_eq!((head, block.as_ref()), (h, b));
        }
    }

    #[test]
    fn records_that_do_not_fit_their_file_are_refused() {
        let bytes = encode(Some(&head()), None);
        // A span past the end of the (shorter) text.
        assert_eq!(decode(&bytes, FileId(3), "{ }"), None);
        // Not on a character boundary.
        assert_eq!(decode(&bytes, FileId(3), "{é = 1; x = 2; }"), None);
        for len in 0..bytes.len() {
            assert_eq!(decode(&bytes[..len], FileId(3), "{ name = \"t\"; }"), None, "cut at {len}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(decode(&longer, FileId(3), "{ name = \"t\"; }"), None);
    }
}
