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

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::cache::{BlobRef, Blobs, Key, Pack, Reader, Rejected, Store, Writer};
use crate::codegen::CodegenError;
use crate::codegen::model::{Entry, Settings, TestBlock};
use crate::config::Config;
use crate::diagnostic::{Diagnostic, FileId, Sources, Span};
use crate::flake::{self, FlakeInfo};
use crate::project::{self, ProjectError};
use crate::spec::{self, TestSpec, validate::TestHead};

/// How long after a file's last change its stat is trusted to identify
/// its contents: a write within the file system's timestamp granularity
/// of the last one can leave size, mtime and ctime as they were (git's
/// "racy" case). Two seconds covers the coarsest common granularity (FAT).
pub const RACY_MARGIN: Duration = Duration::from_secs(2);

/// A blob file more than twice the size of the blobs still referred to
/// (plus this) is rewritten with only those.
const COMPACT_SLACK: u64 = 1 << 20;

/// One loaded project on the incremental path.
pub struct Run {
    pub flake: FlakeInfo,
    pub sources: Sources,
    /// In the order [`project::load`] gives them.
    pub diagnostics: Vec<Diagnostic>,
    units: Vec<Unit>,
    store: Option<(Store, PathBuf)>,
    pack: Pack,
    /// The blob file, read when a packed block's text is first needed.
    blobs: Option<Blobs>,
    /// What the pack says about the generated file last verified.
    output: Option<OutputState>,
    output_changed: bool,
    /// The digest of this run's expected output, once computed.
    digest: Option<Key>,
    /// Blobs found damaged or missing in this run.
    bad_blobs: std::collections::HashSet<Key>,
    /// [`RACY_MARGIN`]; tests lower it to avoid sleeping.
    #[doc(hidden)]
    pub racy_margin: Duration,
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

/// A unit's block: in the blob file (its text read and checked only when
/// the file must be assembled), or rendered in this run.
enum Block {
    Packed {
        blob: BlobRef,
        evaluated: bool,
        /// Where the checked text is in [`Run::blobs`], once read.
        text: Option<std::ops::Range<usize>>,
    },
    Fresh {
        block: TestBlock,
        hash: Key,
    },
}

impl Block {
    fn hash(&self) -> &Key {
        match self {
            Block::Packed { blob, .. } => &blob.hash,
            Block::Fresh { hash, .. } => hash,
        }
    }
    fn evaluated(&self) -> bool {
        match self {
            Block::Packed { evaluated, .. } => *evaluated,
            Block::Fresh { block, .. } => block.evaluated,
        }
    }
}

/// The identity of a file's contents as `stat` gives it: any write
/// changes at least one field, once the write is more than the timestamp
/// granularity after the previous one ([`RACY_MARGIN`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
    ino: u64,
    dev: u64,
}

impl Stamp {
    pub fn of(meta: &std::fs::Metadata) -> Stamp {
        use std::os::unix::fs::MetadataExt;
        let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
        Stamp {
            size: meta.len(),
            mtime_ns: ns(meta.mtime(), meta.mtime_nsec()),
            ctime_ns: ns(meta.ctime(), meta.ctime_nsec()),
            ino: meta.ino(),
            dev: meta.dev(),
        }
    }

    /// Whether the last change was at least `margin` before `before` (the
    /// time taken before the contents were read): a later write then
    /// changes the stamp.
    fn settled(&self, before: SystemTime, margin: Duration) -> bool {
        let Ok(before) = before.duration_since(SystemTime::UNIX_EPOCH) else { return false };
        let limit = before.as_nanos() as i128 - margin.as_nanos() as i128;
        self.mtime_ns.max(self.ctime_ns) <= limit
    }
}

/// A file's stamp, and a time taken before its contents were read.
#[derive(Clone, Copy, Debug)]
pub struct Observed {
    stamp: Stamp,
    before: SystemTime,
}

/// What the pack remembers of the generated file: the digest of the
/// output it was verified against, the BLAKE3 hash of that output, and
/// the file's settled stamp then (none when it had changed too recently).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct OutputState {
    digest: Key,
    content: Key,
    stamp: Option<Stamp>,
}

/// How [`Run::known_current`] knew the generated file is current.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Its stat is the one recorded when its contents were last verified.
    Stamp,
    /// Its contents hash as the expected output's did.
    ContentHash,
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
    /// Whether the blob file was read (the file was assembled).
    pub blobs_read: bool,
}

/// The pack's key of the [`OutputState`] record.
fn output_key() -> Key {
    *blake3::hash(b"nixvm-gen output state").as_bytes()
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
    let output = pack.get(&output_key()).and_then(decode_output);
    let context = context_key(config, &flake);
    let mut units = Vec::new();
    for rel in project::discover(config, &flake)? {
        let text = project::read_description(config, &rel)?;
        let key = unit_key(&context, &rel, &text);
        let file = sources.add(rel.clone(), text);
        let record = pack.get(&key).and_then(|bytes| decode(bytes, file, sources.text(file)));
        let reused = record.is_some();
        let (head, block) = record.unwrap_or((None, None));
        let block = block.map(|(blob, evaluated)| Block::Packed { blob, evaluated, text: None });
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
    Ok(Run {
        flake,
        sources,
        diagnostics,
        units,
        store,
        pack,
        blobs: None,
        output,
        output_changed: false,
        digest: None,
        bad_blobs: Default::default(),
        racy_margin: RACY_MARGIN,
    })
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
            blobs_read: self.blobs.is_some(),
        }
    }

    /// The valid units, sorted by test name (the file's order).
    fn order(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.units.len()).filter(|&i| self.units[i].head.is_some()).collect();
        order.sort_by(|&a, &b| self.units[a].head_name().cmp(self.units[b].head_name()));
        order
    }

    /// Renders the generated file like [`crate::codegen::render_with`],
    /// rendering only the blocks the cache did not have.
    pub fn render(&mut self, config: &Config, hydra_jobs: bool) -> Result<String, CodegenError> {
        let settings = Settings::new(config)?;
        let order = self.order();
        self.read_texts(&order);
        self.fill_blocks(&order, &settings)?;
        if self.store.is_some() {
            self.digest = Some(self.digest_of(&order, &settings, hydra_jobs));
        }
        let entries: Vec<Entry> = order
            .iter()
            .filter_map(|&i| {
                let unit = &self.units[i];
                let head = unit.head.as_ref()?;
                let block = unit.block.as_ref()?;
                Some(Entry {
                    name: &head.name,
                    file: &head.file,
                    systems: head.systems.as_deref(),
                    text: self.block_text(block),
                    evaluated: block.evaluated(),
                })
            })
            .collect();
        crate::codegen::render_file(&settings, &entries, hydra_jobs)
    }

    /// Whether the generated file at `path` is known to be what
    /// [`Run::render`] would give, without rendering it: the pack recorded
    /// the digest of the expected output (the blocks' hashes and all the
    /// file around them depends on) when it last verified the file, and
    /// the file's stat is the settled one recorded then, or its contents
    /// still hash the same. `None`: render and compare.
    pub fn known_current(
        &mut self,
        config: &Config,
        hydra_jobs: bool,
        path: &Path,
    ) -> Result<Option<Verdict>, CodegenError> {
        if self.store.is_none() {
            return Ok(None);
        }
        let settings = Settings::new(config)?;
        let order = self.order();
        self.fill_blocks(&order, &settings)?;
        let digest = self.digest_of(&order, &settings, hydra_jobs);
        self.digest = Some(digest);
        let Some(state) = self.output.filter(|s| s.digest == digest) else { return Ok(None) };
        let Ok(meta) = std::fs::metadata(path) else { return Ok(None) };
        if state.stamp.is_some_and(|s| s == Stamp::of(&meta)) {
            return Ok(Some(Verdict::Stamp));
        }
        let Ok((content, seen)) = hash_file(path) else { return Ok(None) };
        if content != state.content {
            return Ok(None);
        }
        let stamp = seen.filter(|o| o.stamp.settled(o.before, self.racy_margin)).map(|o| o.stamp);
        if stamp != state.stamp {
            self.output = Some(OutputState { stamp, ..state });
            self.output_changed = true;
        }
        Ok(Some(Verdict::ContentHash))
    }

    /// Records that the generated file holds `text`, the output of this
    /// run's [`Run::render`] (compared, or just written); `seen` is its
    /// stat from then, kept only when settled.
    pub fn record_output(&mut self, text: &str, seen: Option<Observed>) {
        let Some(digest) = self.digest else { return };
        let stamp = seen.filter(|o| o.stamp.settled(o.before, self.racy_margin)).map(|o| o.stamp);
        let state = OutputState { digest, content: *blake3::hash(text.as_bytes()).as_bytes(), stamp };
        if self.output != Some(state) {
            self.output = Some(state);
            self.output_changed = true;
        }
    }

    /// The hash of everything [`crate::codegen::render_file`] makes the
    /// file from: the settings, the entries with their blocks' hashes.
    /// Equal digests, equal outputs (the pack is tied to one build).
    fn digest_of(&self, order: &[usize], settings: &Settings, hydra_jobs: bool) -> Key {
        let mut h = blake3::Hasher::new();
        h.update(b"nixvm-gen output\0");
        settings.digest_into(&mut h);
        h.update(&[u8::from(hydra_jobs)]);
        let put = |h: &mut blake3::Hasher, bytes: &[u8]| {
            h.update(&(bytes.len() as u64).to_le_bytes());
            h.update(bytes);
        };
        for &i in order {
            let unit = &self.units[i];
            let (Some(head), Some(block)) = (&unit.head, &unit.block) else { continue };
            put(&mut h, head.name.as_bytes());
            put(&mut h, head.file.as_os_str().as_encoded_bytes());
            match &head.systems {
                Some(list) => {
                    h.update(&(list.len() as u64 + 1).to_le_bytes());
                    list.iter().for_each(|s| put(&mut h, s.as_bytes()));
                }
                None => {
                    h.update(&0u64.to_le_bytes());
                }
            }
            h.update(&[u8::from(block.evaluated())]);
            h.update(block.hash());
        }
        *h.finalize().as_bytes()
    }

    fn block_text<'a>(&'a self, block: &'a Block) -> &'a str {
        match block {
            // Checked (hash and UTF-8) by `read_texts`; never empty here.
            Block::Packed { text: Some(range), .. } => self
                .blobs
                .as_ref()
                .map_or("", |b| std::str::from_utf8(&b.bytes()[range.clone()]).unwrap_or("")),
            Block::Packed { text: None, .. } => "",
            Block::Fresh { block, .. } => &block.text,
        }
    }

    /// Reads the texts of the packed blocks among `order` from the blob
    /// file; a block whose bytes are missing or do not hash as recorded is
    /// dropped (rendered again).
    fn read_texts(&mut self, order: &[usize]) {
        let wanted =
            order.iter().any(|&i| matches!(self.units[i].block, Some(Block::Packed { text: None, .. })));
        if !wanted {
            return;
        }
        let blobs = match (&self.blobs, &self.store) {
            (Some(_), _) | (None, None) => self.blobs.take().unwrap_or_default(),
            (None, Some((store, path))) => store.read_blobs(path),
        };
        for &i in order {
            let unit = &mut self.units[i];
            if let Some(Block::Packed { blob, text: text @ None, .. }) = &mut unit.block {
                match blobs.range(blob).filter(|r| std::str::from_utf8(&blobs.bytes()[r.clone()]).is_ok()) {
                    Some(range) => *text = Some(range),
                    None => {
                        self.bad_blobs.insert(blob.hash);
                        unit.block = None;
                        unit.reused = false;
                    }
                }
            }
        }
        self.blobs = Some(blobs);
    }

    /// Renders the blocks among `order` that the cache did not have,
    /// parsing again the units whose record has no block.
    fn fill_blocks(&mut self, order: &[usize], settings: &Settings) -> Result<(), CodegenError> {
        self.reparse(order);
        let todo: Vec<usize> = order.iter().copied().filter(|&i| self.units[i].block.is_none()).collect();
        let mut specs = Vec::with_capacity(todo.len());
        for &i in &todo {
            // Only a forged record (right hash, wrong head) has neither.
            let Some(spec) = &self.units[i].spec else {
                return Err(CodegenError::Unsupported {
                    location: self.units[i].rel.display().to_string(),
                    message: "the cache does not match this description; run again with --no-cache"
                        .to_string(),
                });
            };
            specs.push(spec);
        }
        let blocks = crate::codegen::test_blocks(&specs, &self.flake, &self.sources, settings);
        // The first error in the file's order, as a one-by-one render gives.
        let blocks = blocks.into_iter().collect::<Result<Vec<_>, _>>()?;
        let hashing = self.store.is_some();
        for (i, block) in todo.into_iter().zip(blocks) {
            // Without a cache the hash is never used.
            let hash = if hashing { *blake3::hash(block.text.as_bytes()).as_bytes() } else { [0; 32] };
            let unit = &mut self.units[i];
            unit.block = Some(Block::Fresh { block, hash });
            unit.reused = false;
        }
        Ok(())
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
    /// pack's), so the next run can reuse them: new blocks are appended to
    /// the blob file (or it is compacted), then the pack is replaced.
    /// Returns whether it wrote.
    pub fn save(&mut self) -> std::io::Result<bool> {
        let Some((store, path)) = self.store.clone() else { return Ok(false) };
        let kept: Vec<usize> = (0..self.units.len()).filter(|&i| !self.units[i].diagnosed).collect();
        let state_records = usize::from(self.output.is_some());
        let unchanged = self.pack.rejected.is_none()
            && !self.output_changed
            && kept.iter().all(|&i| self.units[i].reused)
            && kept.len() + state_records == self.pack.len()
            && (self.pack.get(&output_key()).is_some() == self.output.is_some());
        if unchanged {
            return Ok(false);
        }
        // Where each block's bytes are (or will be) in the blob file.
        let mut refs: HashMap<Key, BlobRef> = HashMap::new();
        for &i in &kept {
            if let Some(Block::Packed { blob, .. }) = &self.units[i].block {
                refs.entry(blob.hash).or_insert(*blob);
            }
        }
        let fresh: Vec<usize> = kept
            .iter()
            .copied()
            .filter(|&i| matches!(self.units[i].block, Some(Block::Fresh { .. })))
            .collect();
        if !fresh.is_empty() {
            // Blocks the old records hold (an edit that left the block as
            // it was, a description renamed back): no new bytes, once the
            // old bytes are checked.
            let old: HashMap<Key, BlobRef> =
                self.pack.values().filter_map(decode_blob).map(|b| (b.hash, b)).collect();
            for &i in &fresh {
                if let Some(block) = &self.units[i].block
                    && !refs.contains_key(block.hash())
                    && !self.bad_blobs.contains(block.hash())
                    && let Some(blob) = old.get(block.hash())
                {
                    let intact = match &self.blobs {
                        Some(blobs) => blobs.range(blob).is_some(),
                        None => store.has_blob(&path, blob),
                    };
                    if intact {
                        refs.insert(blob.hash, *blob);
                    }
                }
            }
        }
        let mut new: Vec<&str> = Vec::new();
        let mut queued: std::collections::HashSet<Key> = std::collections::HashSet::new();
        for &i in &fresh {
            if let Some(Block::Fresh { block, hash }) = &self.units[i].block
                && !refs.contains_key(hash)
                && queued.insert(*hash)
            {
                new.push(&block.text);
            }
        }
        let new_len: u64 = new.iter().map(|t| t.len() as u64).sum();
        let mut live: std::collections::HashSet<Key> = std::collections::HashSet::new();
        let mut live_len = new_len;
        for &i in &kept {
            if let Some(block) = &self.units[i].block
                && let Some(blob) = refs.get(block.hash())
                && live.insert(blob.hash)
            {
                live_len += u64::from(blob.len);
            }
        }
        let compact = store.blobs_len(&path) + new_len > 2 * live_len + COMPACT_SLACK;
        let rewrite = if compact {
            // Every kept block's text, from the blob file or this run.
            self.read_texts(&kept);
            let mut texts: Vec<&str> = Vec::new();
            let mut seen = std::collections::HashSet::new();
            for &i in &kept {
                if let Some(block) = &self.units[i].block
                    && seen.insert(*block.hash())
                {
                    texts.push(self.block_text(block));
                }
            }
            let bytes: Vec<&[u8]> = texts.iter().map(|t| t.as_bytes()).collect();
            refs = store.rewrite_blobs(&path, &bytes)?.into_iter().map(|b| (b.hash, b)).collect();
            true
        } else {
            let bytes: Vec<&[u8]> = new.iter().map(|t| t.as_bytes()).collect();
            if !bytes.is_empty() {
                refs.extend(store.append_blobs(&path, &bytes)?.into_iter().map(|b| (b.hash, b)));
            }
            false
        };
        let mut records: Vec<(Key, std::borrow::Cow<[u8]>)> = Vec::with_capacity(kept.len() + 1);
        for &i in &kept {
            let u = &self.units[i];
            let verbatim = (u.reused && !rewrite).then(|| self.pack.get(&u.key)).flatten();
            let record = match verbatim {
                Some(bytes) => std::borrow::Cow::Borrowed(bytes),
                None => {
                    let block = u.block.as_ref().and_then(|b| Some((*refs.get(b.hash())?, b.evaluated())));
                    std::borrow::Cow::Owned(encode(u.head.as_ref(), block))
                }
            };
            records.push((u.key, record));
        }
        if let Some(state) = &self.output {
            records.push((output_key(), std::borrow::Cow::Owned(encode_output(state))));
        }
        let records: Vec<(Key, &[u8])> = records.iter().map(|(k, r)| (*k, r.as_ref())).collect();
        store.write(&path, &records)?;
        Ok(true)
    }
}

/// Hashes the file at `path` as it reads it; its stamp when it did not
/// change meanwhile.
fn hash_file(path: &Path) -> std::io::Result<(Key, Option<Observed>)> {
    use std::io::Read;
    let before = SystemTime::now();
    let mut file = std::fs::File::open(path)?;
    let first = Stamp::of(&file.metadata()?);
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; 256 << 10];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                h.update(&buf[..n]);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let last = Stamp::of(&file.metadata()?);
    Ok((*h.finalize().as_bytes(), (first == last).then_some(Observed { stamp: first, before })))
}

/// Whether the file at `path` holds exactly `bytes` (a missing file does
/// not), and its stamp when it did not change while it was compared.
pub fn compare_output(path: &Path, bytes: &[u8]) -> std::io::Result<(bool, Option<Observed>)> {
    let before = SystemTime::now();
    let mut file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((false, None)),
        Err(e) => return Err(e),
    };
    let meta = file.metadata()?;
    if meta.len() != bytes.len() as u64 {
        return Ok((false, None));
    }
    let first = Stamp::of(&meta);
    if !crate::fsutil::reads_exactly(&mut file, bytes)? {
        return Ok((false, None));
    }
    let last = Stamp::of(&file.metadata()?);
    Ok((true, (first == last).then_some(Observed { stamp: first, before })))
}

/// The stamp of the file at `path`, observed now (for a file just written:
/// never settled, so it only records the expected output's hash).
pub fn observe(path: &Path) -> Option<Observed> {
    let before = SystemTime::now();
    std::fs::metadata(path).ok().map(|m| Observed { stamp: Stamp::of(&m), before })
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

/// A unit's record: flags, the block's blob reference, the head (spans as
/// offsets into its own file).
fn encode(head: Option<&TestHead>, block: Option<(BlobRef, bool)>) -> Vec<u8> {
    let mut w = Writer::default();
    let block = block.filter(|_| head.is_some());
    let flags = head.map_or(0, |_| HAS_HEAD)
        | block.map_or(0, |_| HAS_BLOCK)
        | block.map_or(0, |(_, evaluated)| if evaluated { EVALUATED } else { 0 });
    w.u8(flags);
    if let Some((blob, _)) = block {
        blob.write(&mut w);
    }
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
    w.out
}

/// A record read back: the head, and the block's blob (with its
/// `evaluated` flag).
type Decoded = (Option<TestHead>, Option<(BlobRef, bool)>);

/// The blob reference of a unit's record, without the rest.
fn decode_blob(bytes: &[u8]) -> Option<BlobRef> {
    let mut r = Reader::new(bytes);
    (r.u8()? & HAS_BLOCK != 0).then(|| BlobRef::read(&mut r)).flatten()
}

/// Reads a record back for the unit at `file`; `None` (the unit is parsed
/// again) when anything is out of place: spans must lie in the file's text
/// on character boundaries.
fn decode(bytes: &[u8], file: FileId, text: &str) -> Option<Decoded> {
    let mut r = Reader::new(bytes);
    let flags = r.u8()?;
    if flags & !(HAS_HEAD | HAS_BLOCK | EVALUATED) != 0 || (flags & HAS_HEAD == 0 && flags != 0) {
        return None;
    }
    let block =
        if flags & HAS_BLOCK != 0 { Some((BlobRef::read(&mut r)?, flags & EVALUATED != 0)) } else { None };
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
    r.at_end().then_some((head, block))
}

fn encode_output(state: &OutputState) -> Vec<u8> {
    let mut w = Writer::default();
    w.out.extend_from_slice(&state.digest);
    w.out.extend_from_slice(&state.content);
    match &state.stamp {
        Some(s) => {
            w.u8(1);
            w.u64(s.size);
            w.out.extend_from_slice(&s.mtime_ns.to_le_bytes());
            w.out.extend_from_slice(&s.ctime_ns.to_le_bytes());
            w.u64(s.ino);
            w.u64(s.dev);
        }
        None => w.u8(0),
    }
    w.out
}

fn decode_output(bytes: &[u8]) -> Option<OutputState> {
    let mut r = Reader::new(bytes);
    let key = |r: &mut Reader| -> Option<Key> { r.take(32)?.try_into().ok() };
    let i128 = |r: &mut Reader| -> Option<i128> { r.take(16)?.try_into().ok().map(i128::from_le_bytes) };
    let digest = key(&mut r)?;
    let content = key(&mut r)?;
    let stamp = match r.u8()? {
        0 => None,
        1 => Some(Stamp {
            size: r.u64()?,
            mtime_ns: i128(&mut r)?,
            ctime_ns: i128(&mut r)?,
            ino: r.u64()?,
            dev: r.u64()?,
        }),
        _ => return None,
    };
    r.at_end().then_some(OutputState { digest, content, stamp })
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
        let blob = BlobRef { hash: [7; 32], offset: 16, len: 20 };
        for (h, b) in [
            (Some(head()), Some((blob, true))),
            (Some(head()), Some((blob, false))),
            (Some(head()), None),
            (None, None),
        ] {
            let bytes = encode(h.as_ref(), b);
            assert_eq!(decode(&bytes, FileId(3), text), Some((h, b)));
            assert_eq!(decode_blob(&bytes), b.map(|(blob, _)| blob));
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

    #[test]
    fn output_states_round_trip() {
        let stamp = Stamp { size: 9, mtime_ns: -5, ctime_ns: 1 << 70, ino: 3, dev: 4 };
        for stamp in [Some(stamp), None] {
            let state = OutputState { digest: [1; 32], content: [2; 32], stamp };
            let bytes = encode_output(&state);
            assert_eq!(decode_output(&bytes), Some(state));
            for len in 0..bytes.len() {
                assert_eq!(decode_output(&bytes[..len]), None, "cut at {len}");
            }
        }
    }

    #[test]
    fn a_stamp_is_settled_only_a_margin_after_the_last_change() {
        let at = |secs: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
        let stamp = Stamp { size: 1, mtime_ns: 100_000_000_000, ctime_ns: 101_000_000_000, ino: 1, dev: 1 };
        // The later of mtime and ctime counts.
        assert!(!stamp.settled(at(102), RACY_MARGIN));
        assert!(stamp.settled(at(103), RACY_MARGIN));
        assert!(stamp.settled(at(101), Duration::ZERO));
        assert!(!stamp.settled(at(100), Duration::ZERO));
    }
}
