//! The cache of `check` and `generate` (issue 16): one pack file per flake
//! in the user's cache directory, holding records keyed by content hashes
//! (what a record means is [`crate::incremental`]'s business).
//!
//! Where: `$NIXVM_GEN_CACHE_DIR`, else `$XDG_CACHE_HOME/nixvm-gen`, else
//! `~/.cache/nixvm-gen`. Not `.cache/` in the flake: a file written there
//! would become part of a `path:` flake's source (and of its hash), needs a
//! `.gitignore` of its own, fails in a read-only checkout, and a repository
//! could plant a symbolic link at that place to redirect the write. The
//! user's cache directory has none of these problems; the pack's name is a
//! hash of the flake's canonical path, so worktrees do not share a pack.
//!
//! Two files per flake: the pack (`<hash>.pack`), small records read on
//! every run, and its blob file (`<hash>.blobs`), the large texts (rendered
//! test blocks) the records refer to by [`BlobRef`], read only when a run
//! needs them. A change to one record rewrites the small pack and appends
//! at most one blob, instead of rewriting megabytes.
//!
//! Trust: nothing read is believed before it is checked. A pack starts with
//! a magic string, the schema and the identity of the binary that wrote it
//! (version, path, size and mtime of the executable, so a rebuilt tool
//! never reads an older build's records) and ends with a BLAKE3 hash of
//! everything before it. A pack that is short, too large, damaged, or from
//! another schema or build is ignored (and replaced by the next write);
//! every length inside is checked against what is left. A blob is
//! addressed by the BLAKE3 hash of its bytes, which its reference (in the
//! checked pack) carries: [`Blobs::get`] hashes the bytes it returns, so a
//! damaged, truncated, concurrently appended or compacted blob file yields
//! "missing" (the text is made again), never wrong bytes.
//!
//! Writes of a pack go to a temporary file in the cache directory, renamed
//! over the pack (atomic; a symbolic link at the pack's name is replaced,
//! not followed). Blobs are appended under an exclusive `flock`, and the
//! blob file is rewritten with only the live blobs when it is more than
//! twice their size. Size is bounded: a pack or blob file over
//! [`MAX_PACK_BYTES`] is not written, and the directory keeps at most
//! [`MAX_PACKS`] packs and [`MAX_TOTAL_BYTES`] (with their blob files),
//! dropping the least recently written first.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};

/// Bumped whenever the layout of a pack or of its records changes.
pub const SCHEMA: u32 = 2;
const BLOB_MAGIC: &[u8; 16] = b"nixvm-gen blobs\n";
const MAGIC: &[u8; 16] = b"nixvm-gen cache\n";
/// Larger packs are neither written nor read.
pub const MAX_PACK_BYTES: u64 = 256 << 20;
/// Bound of all packs together.
pub const MAX_TOTAL_BYTES: u64 = 1 << 30;
/// Bound of the number of packs (flakes, worktrees) kept.
pub const MAX_PACKS: usize = 64;
const HASH_BYTES: usize = 32;
/// The variable that overrides the cache directory.
pub const CACHE_DIR_VAR: &str = "NIXVM_GEN_CACHE_DIR";

/// A record's key: a BLAKE3 hash of everything the record depends on.
pub type Key = [u8; HASH_BYTES];

/// A cache directory and the identity of this build.
#[derive(Clone, Debug)]
pub struct Store {
    dir: PathBuf,
    identity: String,
}

/// Why a pack was not used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejected {
    /// There is none yet.
    Missing,
    /// It could not be read (permissions, not a regular file, a link).
    Unreadable,
    TooLarge,
    /// Short, wrong magic, wrong hash, or a length that overruns.
    Damaged,
    /// Written by another schema or another build of nixvm-gen.
    Foreign,
}

impl std::fmt::Display for Rejected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Rejected::Missing => "no cache yet",
            Rejected::Unreadable => "the cache file cannot be read",
            Rejected::TooLarge => "the cache file is too large",
            Rejected::Damaged => "the cache file is damaged",
            Rejected::Foreign => "the cache file was written by another build of nixvm-gen",
        })
    }
}

/// The records of one pack, checked.
#[derive(Debug, Default)]
pub struct Pack {
    bytes: Vec<u8>,
    index: HashMap<Key, Range<usize>>,
    /// Why the pack on disk was ignored, if it was.
    pub rejected: Option<Rejected>,
}

impl Pack {
    pub fn get(&self, key: &Key) -> Option<&[u8]> {
        self.index.get(key).map(|r| &self.bytes[r.clone()])
    }
    /// Where the record of `key` is in [`Pack::bytes`].
    pub fn range(&self, key: &Key) -> Option<Range<usize>> {
        self.index.get(key).cloned()
    }
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
    /// Every record, in no particular order.
    pub fn values(&self) -> impl Iterator<Item = &[u8]> {
        self.index.values().map(|r| &self.bytes[r.clone()])
    }
    pub fn len(&self) -> usize {
        self.index.len()
    }
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }
}

/// Where a blob is: the hash of its bytes (what makes it trusted) and
/// their place in the blob file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BlobRef {
    pub hash: Key,
    pub offset: u64,
    pub len: u32,
}

impl BlobRef {
    pub fn write(&self, w: &mut Writer) {
        w.out.extend_from_slice(&self.hash);
        w.u64(self.offset);
        w.u32(self.len);
    }
    pub fn read(r: &mut Reader) -> Option<BlobRef> {
        let hash = r.take(HASH_BYTES)?.try_into().ok()?;
        Some(BlobRef { hash, offset: r.u64()?, len: r.u32()? })
    }
}

/// A blob file as read, unchecked: [`Blobs::get`] checks what it returns.
#[derive(Debug, Default)]
pub struct Blobs {
    bytes: Vec<u8>,
}

impl Blobs {
    /// The blob's bytes, if they are in the file and hash as its reference
    /// says (anything else, damage included, is "missing").
    pub fn get(&self, blob: &BlobRef) -> Option<&[u8]> {
        self.range(blob).map(|r| &self.bytes[r])
    }
    /// Where [`Blobs::get`]'s bytes are in [`Blobs::bytes`].
    pub fn range(&self, blob: &BlobRef) -> Option<Range<usize>> {
        let start = usize::try_from(blob.offset).ok()?;
        let range = start..start.checked_add(blob.len as usize)?;
        let bytes = self.bytes.get(range.clone())?;
        (blake3::hash(bytes).as_bytes() == &blob.hash).then_some(range)
    }
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// The blob file beside the pack at `pack`.
pub fn blobs_path(pack: &Path) -> PathBuf {
    pack.with_extension("blobs")
}

impl Store {
    /// The user's cache directory (see the module documentation); `None`
    /// when no variable says where it is.
    pub fn from_env() -> Option<Store> {
        let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
        let dir = var(CACHE_DIR_VAR)
            .or_else(|| var("XDG_CACHE_HOME").filter(|p| p.is_absolute()).map(|p| p.join("nixvm-gen")))
            .or_else(|| var("HOME").filter(|p| p.is_absolute()).map(|p| p.join(".cache/nixvm-gen")))?;
        Some(Store::at(dir))
    }

    /// A store in `dir`, for this build.
    pub fn at(dir: impl Into<PathBuf>) -> Store {
        Store { dir: dir.into(), identity: build_identity() }
    }

    /// A store that claims another build's identity (tests of foreign packs).
    #[doc(hidden)]
    pub fn with_identity(dir: impl Into<PathBuf>, identity: &str) -> Store {
        Store { dir: dir.into(), identity: identity.to_string() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The pack of the flake in `flake_dir`.
    pub fn pack_path(&self, flake_dir: &Path) -> PathBuf {
        let canonical = std::fs::canonicalize(flake_dir).unwrap_or_else(|_| flake_dir.to_path_buf());
        let mut h = blake3::Hasher::new();
        h.update(b"nixvm-gen flake\0");
        h.update(canonical.as_os_str().as_encoded_bytes());
        let hex = h.finalize().to_hex();
        self.dir.join(format!("{}.pack", &hex[..32]))
    }

    /// Reads and checks the pack at `path`; an empty pack saying why when it
    /// cannot be used.
    pub fn read(&self, path: &Path) -> Pack {
        let bytes = match read_regular(path) {
            Ok(bytes) => bytes,
            Err(rejected) => return Pack { rejected: Some(rejected), ..Pack::default() },
        };
        match parse(&bytes, &self.identity) {
            Ok(index) => Pack { bytes, index, rejected: None },
            Err(rejected) => Pack { rejected: Some(rejected), ..Pack::default() },
        }
    }

    /// Replaces the pack at `path` (which must be in this store's
    /// directory) with `records`, then keeps the directory within bounds.
    pub fn write(&self, path: &Path, records: &[(Key, &[u8])]) -> std::io::Result<()> {
        if pack_size(&self.identity, records) as u64 > MAX_PACK_BYTES {
            // Too large to keep: drop the old one rather than leave it stale.
            let _ = std::fs::remove_file(path);
            return Ok(());
        }
        create_private_dir(&self.dir)?;
        let mut tmp = tempfile::Builder::new().prefix(crate::fsutil::TEMP_PREFIX).tempfile_in(&self.dir)?;
        // Written and hashed as it goes: no second copy of megabytes.
        {
            let buffered = std::io::BufWriter::with_capacity(256 << 10, tmp.as_file_mut());
            let mut out = HashingWriter { out: buffered, hash: blake3::Hasher::new() };
            encode(&mut out, &self.identity, records)?;
            let hash = out.hash.finalize();
            let file = out.out.into_inner().map_err(|e| e.into_error())?;
            file.write_all(hash.as_bytes())?;
        }
        // No fsync: a pack cut short by a crash fails its hash and is rebuilt.
        tmp.persist(path).map_err(|e| e.error)?;
        self.evict(path);
        Ok(())
    }

    /// Reads the blob file of the pack at `pack` (empty when it cannot be).
    pub fn read_blobs(&self, pack: &Path) -> Blobs {
        Blobs { bytes: read_regular(&blobs_path(pack)).unwrap_or_default() }
    }

    /// Size of the blob file of the pack at `pack` (0 when there is none).
    pub fn blobs_len(&self, pack: &Path) -> u64 {
        std::fs::symlink_metadata(blobs_path(pack)).map_or(0, |m| m.len())
    }

    /// Whether the blob file of the pack at `pack` holds `blob` intact
    /// (reads only its bytes).
    pub fn has_blob(&self, pack: &Path, blob: &BlobRef) -> bool {
        use std::os::unix::fs::FileExt;
        use std::os::unix::fs::OpenOptionsExt;
        let Ok(file) = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
            .open(blobs_path(pack))
        else {
            return false;
        };
        let mut bytes = vec![0; blob.len as usize];
        file.read_exact_at(&mut bytes, blob.offset).is_ok() && blake3::hash(&bytes).as_bytes() == &blob.hash
    }

    /// Appends `blobs` to the blob file of the pack at `pack` and returns
    /// their references. Under an exclusive lock, so two runs appending at
    /// once do not interleave; a reference made stale by a concurrent
    /// rewrite only fails its hash later.
    pub fn append_blobs(&self, pack: &Path, blobs: &[&[u8]]) -> std::io::Result<Vec<BlobRef>> {
        use std::os::unix::fs::OpenOptionsExt;
        use std::os::unix::io::AsRawFd;
        create_private_dir(&self.dir)?;
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
            .open(blobs_path(pack))?;
        // SAFETY: flock on a descriptor this function owns; released on close.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let meta = file.metadata()?;
        if !meta.is_file() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "the blob file is not a regular file",
            ));
        }
        let start = meta.len();
        let size: u64 = blobs.iter().map(|b| (HASH_BYTES + 4 + b.len()) as u64).sum();
        if start + size + BLOB_MAGIC.len() as u64 > MAX_PACK_BYTES {
            return Err(std::io::Error::other("the blob file would be too large"));
        }
        let mut buf = Vec::with_capacity(size as usize + BLOB_MAGIC.len());
        if start == 0 {
            buf.extend_from_slice(BLOB_MAGIC);
        }
        let refs = put_blobs(&mut buf, start, blobs);
        file.write_all(&buf)?;
        Ok(refs)
    }

    /// Replaces the blob file of the pack at `pack` by one holding only
    /// `blobs` (compaction), returning their new references.
    pub fn rewrite_blobs(&self, pack: &Path, blobs: &[&[u8]]) -> std::io::Result<Vec<BlobRef>> {
        create_private_dir(&self.dir)?;
        let mut buf = Vec::with_capacity(blobs.iter().map(|b| HASH_BYTES + 4 + b.len()).sum::<usize>() + 16);
        buf.extend_from_slice(BLOB_MAGIC);
        let refs = put_blobs(&mut buf, 0, blobs);
        if buf.len() as u64 > MAX_PACK_BYTES {
            let _ = std::fs::remove_file(blobs_path(pack));
            return Err(std::io::Error::other("the blob file would be too large"));
        }
        let mut tmp = tempfile::Builder::new().prefix(crate::fsutil::TEMP_PREFIX).tempfile_in(&self.dir)?;
        tmp.as_file_mut().write_all(&buf)?;
        tmp.persist(blobs_path(pack)).map_err(|e| e.error)?;
        Ok(refs)
    }

    /// Drops the least recently written packs (never `keep`) until the
    /// directory is within [`MAX_PACKS`] and [`MAX_TOTAL_BYTES`], and
    /// temporaries a killed run left. Errors are ignored: housekeeping.
    fn evict(&self, keep: &Path) {
        crate::fsutil::remove_stale_temporaries(&self.dir);
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return };
        // A pack counts with its blob file, and goes with it.
        let mut packs: Vec<(std::time::SystemTime, u64, PathBuf)> = entries
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "pack"))
            .filter_map(|e| {
                let meta = e.metadata().ok().filter(std::fs::Metadata::is_file)?;
                let blobs = std::fs::symlink_metadata(blobs_path(&e.path())).map_or(0, |m| m.len());
                Some((meta.modified().ok()?, meta.len() + blobs, e.path()))
            })
            .collect();
        packs.sort();
        let mut total: u64 = packs.iter().map(|p| p.1).sum();
        let mut count = packs.len();
        for (_, len, path) in packs {
            if count <= MAX_PACKS && total <= MAX_TOTAL_BYTES {
                break;
            }
            if path != keep && std::fs::remove_file(&path).is_ok() {
                let _ = std::fs::remove_file(blobs_path(&path));
                count -= 1;
                total -= len;
            }
        }
    }
}

/// Which build wrote a pack: records made by one build are only read by
/// the same build (a development build changes code without changing the
/// version; a store path names one build).
fn build_identity() -> String {
    let exe = std::env::current_exe().ok();
    let meta = exe.as_deref().and_then(|p| std::fs::metadata(p).ok());
    let mtime = meta
        .as_ref()
        .and_then(|m| m.modified().ok())
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    format!(
        "{} schema {SCHEMA} exe {} size {} mtime {mtime}",
        env!("CARGO_PKG_VERSION"),
        exe.as_deref().map_or_else(String::new, |p| p.display().to_string()),
        meta.map_or(0, |m| m.len()),
    )
}

/// Creates the cache directory, readable by the user only.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) => Err(e),
    }
}

/// The bytes of a regular file, not through a link, at most
/// [`MAX_PACK_BYTES`].
fn read_regular(path: &Path) -> Result<Vec<u8>, Rejected> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound { Rejected::Missing } else { Rejected::Unreadable }
        })?;
    let meta = file.metadata().map_err(|_| Rejected::Unreadable)?;
    if !meta.is_file() {
        return Err(Rejected::Unreadable);
    }
    if meta.len() > MAX_PACK_BYTES {
        return Err(Rejected::TooLarge);
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(MAX_PACK_BYTES + 1).read_to_end(&mut bytes).map_err(|_| Rejected::Unreadable)?;
    if bytes.len() as u64 > MAX_PACK_BYTES {
        return Err(Rejected::TooLarge);
    }
    Ok(bytes)
}

/// Layout: magic, schema (u32 LE), identity (u32 length + bytes), record
/// count (u32), records (key, u32 length, bytes), then (written by the
/// caller) BLAKE3 of all before.
fn encode(out: &mut impl Write, identity: &str, records: &[(Key, &[u8])]) -> std::io::Result<()> {
    out.write_all(MAGIC)?;
    out.write_all(&SCHEMA.to_le_bytes())?;
    put_bytes(out, identity.as_bytes())?;
    out.write_all(&(records.len() as u32).to_le_bytes())?;
    for (key, record) in records {
        out.write_all(key)?;
        put_bytes(out, record)?;
    }
    Ok(())
}

/// Blob entries: hash, u32 length, bytes; `start` is where `buf` begins
/// in the file.
fn put_blobs(buf: &mut Vec<u8>, start: u64, blobs: &[&[u8]]) -> Vec<BlobRef> {
    blobs
        .iter()
        .map(|b| {
            let hash = *blake3::hash(b).as_bytes();
            buf.extend_from_slice(&hash);
            buf.extend_from_slice(&(b.len() as u32).to_le_bytes());
            let offset = start + buf.len() as u64;
            buf.extend_from_slice(b);
            BlobRef { hash, offset, len: b.len() as u32 }
        })
        .collect()
}

fn pack_size(identity: &str, records: &[(Key, &[u8])]) -> usize {
    MAGIC.len()
        + 12
        + identity.len()
        + records.iter().map(|(_, r)| HASH_BYTES + 4 + r.len()).sum::<usize>()
        + HASH_BYTES
}

fn put_bytes(out: &mut impl Write, bytes: &[u8]) -> std::io::Result<()> {
    out.write_all(&(bytes.len() as u32).to_le_bytes())?;
    out.write_all(bytes)
}

/// Hashes what it passes on.
struct HashingWriter<W> {
    out: W,
    hash: blake3::Hasher,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.out.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// Checks a pack and indexes its records.
fn parse(bytes: &[u8], identity: &str) -> Result<HashMap<Key, Range<usize>>, Rejected> {
    if bytes.len() < MAGIC.len() + HASH_BYTES || &bytes[..MAGIC.len()] != MAGIC {
        return Err(Rejected::Damaged);
    }
    let (body, hash) = bytes.split_at(bytes.len() - HASH_BYTES);
    if blake3::hash(body).as_bytes() != hash {
        return Err(Rejected::Damaged);
    }
    let mut r = Reader::new(body);
    r.pos = MAGIC.len();
    if r.u32().ok_or(Rejected::Damaged)? != SCHEMA {
        return Err(Rejected::Foreign);
    }
    if r.bytes().ok_or(Rejected::Damaged)? != identity.as_bytes() {
        return Err(Rejected::Foreign);
    }
    let count = r.u32().ok_or(Rejected::Damaged)? as usize;
    // Each record takes at least a key and a length: a count beyond that
    // is damage, not a reason to reserve memory.
    if count > body.len() / (HASH_BYTES + 4) {
        return Err(Rejected::Damaged);
    }
    let mut index = HashMap::with_capacity(count);
    for _ in 0..count {
        let key: Key = r.take(HASH_BYTES).and_then(|k| k.try_into().ok()).ok_or(Rejected::Damaged)?;
        let len = r.u32().ok_or(Rejected::Damaged)? as usize;
        let start = r.pos;
        r.take(len).ok_or(Rejected::Damaged)?;
        if index.insert(key, start..start + len).is_some() {
            return Err(Rejected::Damaged);
        }
    }
    if r.pos != body.len() {
        return Err(Rejected::Damaged);
    }
    Ok(index)
}

/// Reads little-endian fields, every length checked against what is left.
pub struct Reader<'a> {
    bytes: &'a [u8],
    pub pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, pos: 0 }
    }
    pub fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len())?;
        let out = &self.bytes[self.pos..end];
        self.pos = end;
        Some(out)
    }
    pub fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    pub fn u32(&mut self) -> Option<u32> {
        self.take(4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub fn u64(&mut self) -> Option<u64> {
        self.take(8).and_then(|b| b.try_into().ok()).map(u64::from_le_bytes)
    }
    /// A u32 length, then that many bytes.
    pub fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    pub fn str(&mut self) -> Option<&'a str> {
        std::str::from_utf8(self.bytes()?).ok()
    }
    pub fn at_end(&self) -> bool {
        self.pos == self.bytes.len()
    }
}

/// Writes what [`Reader`] reads.
#[derive(Default)]
pub struct Writer {
    pub out: Vec<u8>,
}

impl Writer {
    pub fn u8(&mut self, v: u8) {
        self.out.push(v);
    }
    pub fn u32(&mut self, v: u32) {
        self.out.extend_from_slice(&v.to_le_bytes());
    }
    pub fn u64(&mut self, v: u64) {
        self.out.extend_from_slice(&v.to_le_bytes());
    }
    pub fn bytes(&mut self, v: &[u8]) {
        self.u32(v.len() as u32);
        self.out.extend_from_slice(v);
    }
    pub fn str(&mut self, v: &str) {
        self.bytes(v.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> Key {
        [n; HASH_BYTES]
    }

    fn written(store: &Store, path: &Path) -> Vec<u8> {
        store.write(path, &[(key(1), b"one"), (key(2), b"")]).unwrap();
        std::fs::read(path).unwrap()
    }

    #[test]
    fn a_pack_reads_back_what_was_written() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::at(dir.path().join("cache"));
        let path = store.pack_path(dir.path());
        assert_eq!(store.read(&path).rejected, Some(Rejected::Missing));
        written(&store, &path);
        let pack = store.read(&path);
        assert_eq!(pack.rejected, None);
        assert_eq!(
            (pack.len(), pack.get(&key(1)), pack.get(&key(2)), pack.get(&key(3))),
            (2, Some(&b"one"[..]), Some(&b""[..]), None)
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(store.dir()).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "the cache directory is private");
    }

    #[test]
    fn damaged_packs_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::at(dir.path());
        let path = dir.path().join("p.pack");
        let good = written(&store, &path);
        let rejected = |bytes: &[u8]| {
            std::fs::write(&path, bytes).unwrap();
            store.read(&path).rejected
        };
        // Every truncation, and every single flipped byte, is caught.
        for len in 0..good.len() {
            assert_eq!(rejected(&good[..len]), Some(Rejected::Damaged), "cut at {len}");
        }
        for at in 0..good.len() {
            let mut bad = good.clone();
            bad[at] ^= 0x20;
            assert_eq!(rejected(&bad), Some(Rejected::Damaged), "byte {at} flipped");
        }
        let mut longer = good.clone();
        longer.push(0);
        assert_eq!(rejected(&longer), Some(Rejected::Damaged));
        assert_eq!(rejected(&good), None);
    }

    #[test]
    fn a_consistent_pack_with_bad_lengths_is_refused_without_panicking() {
        // A pack whose hash is right but whose count or lengths lie (what a
        // foreign writer could produce) is refused by the bounds checks.
        let dir = tempfile::tempdir().unwrap();
        let store = Store::at(dir.path());
        let path = dir.path().join("p.pack");
        let mut body = written(&store, &path);
        body.truncate(body.len() - HASH_BYTES);
        let count_at = MAGIC.len() + 4 + 4 + store.identity.len();
        for (at, value) in [(count_at, u32::MAX), (count_at, 3), (count_at + 4 + HASH_BYTES, 1 << 30)] {
            let mut bad = body.clone();
            bad[at..at + 4].copy_from_slice(&value.to_le_bytes());
            let hash = blake3::hash(&bad);
            bad.extend_from_slice(hash.as_bytes());
            std::fs::write(&path, &bad).unwrap();
            assert_eq!(store.read(&path).rejected, Some(Rejected::Damaged), "{value} at {at}");
        }
    }

    #[test]
    fn another_build_or_schema_is_foreign() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.pack");
        written(&Store::with_identity(dir.path(), "0.0.1 other build"), &path);
        assert_eq!(Store::at(dir.path()).read(&path).rejected, Some(Rejected::Foreign));
        let store = Store::at(dir.path());
        let mut bytes = written(&store, &path);
        bytes[MAGIC.len()..MAGIC.len() + 4].copy_from_slice(&(SCHEMA + 1).to_le_bytes());
        let n = bytes.len() - HASH_BYTES;
        let hash = blake3::hash(&bytes[..n]);
        bytes[n..].copy_from_slice(hash.as_bytes());
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(store.read(&path).rejected, Some(Rejected::Foreign));
    }

    #[test]
    fn links_are_neither_read_nor_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::at(dir.path().join("cache"));
        let path = store.pack_path(dir.path());
        let elsewhere = dir.path().join("elsewhere");
        written(&store, &elsewhere);
        std::fs::remove_file(&path).ok();
        std::os::unix::fs::symlink(&elsewhere, &path).unwrap();
        assert_eq!(store.read(&path).rejected, Some(Rejected::Unreadable));
        store.write(&path, &[(key(9), b"nine")]).unwrap();
        assert!(!std::fs::symlink_metadata(&path).unwrap().file_type().is_symlink(), "the link was replaced");
        assert_eq!(store.read(&elsewhere).get(&key(1)), Some(&b"one"[..]), "the link's target is untouched");
        assert_eq!(store.read(&path).get(&key(9)), Some(&b"nine"[..]));
    }

    #[test]
    fn blobs_read_back_and_damage_only_makes_them_missing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::at(dir.path().join("cache"));
        let pack = store.pack_path(dir.path());
        let first = store.append_blobs(&pack, &[b"alpha", b""]).unwrap();
        let second = store.append_blobs(&pack, &[b"beta"]).unwrap();
        let refs: Vec<BlobRef> = first.into_iter().chain(second).collect();
        let wanted: [&[u8]; 3] = [b"alpha", b"", b"beta"];
        let blobs = store.read_blobs(&pack);
        for (r, want) in refs.iter().zip(wanted) {
            assert_eq!(blobs.get(r), Some(want));
        }
        assert_eq!(store.blobs_len(&pack), blobs.bytes().len() as u64);
        // A reference whose hash is not its bytes' finds nothing.
        assert_eq!(blobs.get(&BlobRef { hash: refs[2].hash, ..refs[0] }), None);
        // Every truncation and every flipped byte: each blob reads back
        // right or not at all, and the blobs the damage touches are gone.
        let good = std::fs::read(blobs_path(&pack)).unwrap();
        let check = |bytes: &[u8], what: &str| {
            std::fs::write(blobs_path(&pack), bytes).unwrap();
            let blobs = store.read_blobs(&pack);
            let mut missing = 0;
            for (r, want) in refs.iter().zip(wanted) {
                match blobs.get(r) {
                    Some(got) => assert_eq!(got, want, "{what}"),
                    None => missing += 1,
                }
            }
            missing
        };
        for len in 0..good.len() {
            let touched = refs.iter().filter(|r| r.offset as usize + r.len as usize > len).count();
            assert_eq!(check(&good[..len], &format!("cut at {len}")), touched, "cut at {len}");
        }
        for at in 0..good.len() {
            let mut bad = good.clone();
            bad[at] ^= 0x20;
            let inside =
                refs.iter().any(|r| (r.offset as usize..r.offset as usize + r.len as usize).contains(&at));
            assert_eq!(check(&bad, &format!("byte {at}")), usize::from(inside), "byte {at} flipped");
        }
        // Compaction keeps what it is given, at new places.
        let kept = store.rewrite_blobs(&pack, &[b"beta"]).unwrap();
        let blobs = store.read_blobs(&pack);
        assert_eq!(blobs.get(&kept[0]), Some(&b"beta"[..]));
        assert_eq!(blobs.get(&refs[0]), None, "the old places are gone");
    }

    #[test]
    fn blob_files_go_with_their_packs() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::at(dir.path());
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        for i in 0..MAX_PACKS {
            let path = dir.path().join(format!("{i:03}.pack"));
            std::fs::write(&path, b"x").unwrap();
            std::fs::write(blobs_path(&path), b"y").unwrap();
            std::fs::File::options().write(true).open(&path).unwrap().set_modified(old).unwrap();
        }
        store.write(&dir.path().join("mine.pack"), &[(key(1), b"one")]).unwrap();
        assert!(!dir.path().join("000.pack").exists() && !dir.path().join("000.blobs").exists());
        assert!(dir.path().join("001.pack").exists() && dir.path().join("001.blobs").exists());
    }

    #[test]
    fn the_directory_keeps_at_most_max_packs() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::at(dir.path());
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        for i in 0..MAX_PACKS + 3 {
            let path = dir.path().join(format!("{i:03}.pack"));
            std::fs::write(&path, b"x").unwrap();
            let when = old + std::time::Duration::from_secs(i as u64);
            std::fs::File::options().write(true).open(&path).unwrap().set_modified(when).unwrap();
        }
        let mine = dir.path().join("mine.pack");
        store.write(&mine, &[(key(1), b"one")]).unwrap();
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(left.len(), MAX_PACKS);
        assert!(mine.exists());
        for gone in ["000.pack", "001.pack", "002.pack", "003.pack"] {
            assert!(!dir.path().join(gone).exists(), "{gone} is among the oldest");
        }
        assert!(dir.path().join("004.pack").exists());
    }
}
