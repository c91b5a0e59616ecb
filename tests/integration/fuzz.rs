//! The standing fuzz suite (issue 11), on stable Rust: every target takes
//! mutations of the repository's fixtures (byte flips, inserted Nix and
//! shell tokens, deleted, repeated and spliced ranges) and must neither
//! panic nor hang; where a result must keep a property, that is checked too
//! (generated code re-parses with rnix; an accepted derivation round-trips).
//!
//! Smoke mode (the default, part of `cargo test`): a second per target.
//! Long runs, as recorded in docs/reliability.md:
//!
//! ```text
//! NIXVM_FUZZ_SECS=600 cargo test --release --test integration fuzz -- --nocapture
//! ```
//!
//! `NIXVM_FUZZ_SEED` fixes the seed (printed at the start); a failure prints
//! the target, seed and input, which then becomes a regression test.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nixvm_gen::config::Config;
use nixvm_gen::diagnostic::Sources;
use nixvm_gen::spec::{parse, validate};

use crate::util;

/// xorshift64*: small, deterministic, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 { 0 } else { (self.next() % n as u64) as usize }
    }
}

/// Tokens that reach the interesting corners of Nix, the shell and paths.
const DICTIONARY: &[&str] = &[
    "[",
    "]",
    "{",
    "}",
    "(",
    ")",
    "${",
    "''",
    "'''",
    "\"",
    "\\",
    "\\\"",
    "//",
    "++",
    "+",
    "-",
    "->",
    "?",
    ":",
    "@",
    ".",
    "..",
    "/",
    "../",
    "/etc/",
    "let ",
    " in ",
    "with ",
    "rec ",
    "inherit ",
    "if ",
    "then ",
    "else ",
    "assert ",
    "or ",
    ";",
    "=",
    ",",
    "...",
    "\0",
    "\u{1b}",
    "\n",
    "\r",
    "\t",
    " ",
    "0",
    "-1",
    "4294967296",
    "1e308",
    "true",
    "null",
    "import ",
    "/dev/zero",
    "./x.nix",
    "self.nixosModules.",
    "nixosModules.",
    "steps",
    "nodes",
    "succeed",
    "node",
    "timeout",
    "matches",
    "a**",
    "(?<x>",
    "\\B",
    "targetDir",
    "screenshot",
    "copyFromVm",
    "sendKeys",
    "sendChars",
    "waitUntilTtyMatches",
    "tty",
    "dumpTtyContents",
    "waitForText",
    "waitForX",
    "waitForWindow",
    "ctrl-alt-delete",
    "user",
    "-",
    "--",
    "$(id)",
    "`",
    "✓",
    "\u{307}",
    "__functor",
    "outPath",
];

fn mutate(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut b = seeds[rng.below(seeds.len())].clone();
    for _ in 0..=rng.below(4) {
        let at = rng.below(b.len() + 1);
        match rng.below(6) {
            0 if !b.is_empty() => {
                let i = rng.below(b.len());
                b[i] ^= 1 << rng.below(8);
            }
            1 => {
                let tok = DICTIONARY[rng.below(DICTIONARY.len())].as_bytes();
                b.splice(at..at, tok.iter().copied());
            }
            2 if !b.is_empty() => {
                let end = (at + rng.below(16)).min(b.len());
                b.drain(at.min(end)..end);
            }
            3 if !b.is_empty() => {
                let start = rng.below(b.len());
                let end = (start + 1 + rng.below(32)).min(b.len());
                let piece: Vec<u8> = b[start..end].to_vec();
                for _ in 0..=rng.below(8) {
                    b.splice(at..at, piece.iter().copied());
                }
            }
            4 => {
                let other = &seeds[rng.below(seeds.len())];
                let cut = rng.below(other.len() + 1);
                b.truncate(at);
                b.extend_from_slice(&other[cut..]);
            }
            _ => {
                let tok = DICTIONARY[rng.below(DICTIONARY.len())];
                let n = 1 + rng.below(300);
                b.splice(at..at, tok.repeat(n).bytes());
            }
        }
    }
    b
}

fn files_under(dir: &Path, ext: &str, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            files_under(&p, ext, out);
        } else if p.to_string_lossy().ends_with(ext) {
            out.push(p);
        }
    }
}

fn seeds(dirs: &[&str], ext: &str) -> Vec<Vec<u8>> {
    let mut paths = Vec::new();
    for d in dirs {
        files_under(&util::root().join(d), ext, &mut paths);
    }
    paths.sort();
    let mut out: Vec<Vec<u8>> = paths.iter().filter_map(|p| std::fs::read(p).ok()).collect();
    if out.is_empty() {
        out.push(Vec::new());
    }
    out
}

/// Runs `target` on mutations until the time budget is spent; returns the
/// number of executions. A panic names the target, seed and input.
fn run(name: &str, seeds: &[Vec<u8>], mut target: impl FnMut(&[u8])) -> u64 {
    let secs: f64 = std::env::var("NIXVM_FUZZ_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(1.0);
    let seed: u64 = std::env::var("NIXVM_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64)
    }) | 1;
    let mut rng = Rng(seed);
    let end = Instant::now() + Duration::from_secs_f64(secs);
    let mut n = 0u64;
    // The seeds themselves first.
    for s in seeds {
        target(s);
        n += 1;
    }
    while Instant::now() < end {
        let input = mutate(&mut rng, seeds);
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| target(&input)));
        if let Err(p) = result {
            let shown = String::from_utf8_lossy(&input[..input.len().min(2000)]).into_owned();
            panic!("fuzz target {name} failed (NIXVM_FUZZ_SEED={seed}) on input {shown:?}: {p:?}");
        }
        n += 1;
    }
    eprintln!("fuzz {name}: {n} executions in {secs} s (seed {seed})");
    n
}

/// Descriptions: parse and validate in process, then the whole `check`
/// pipeline (flake analysis, codegen) and an rnix re-parse of the output.
#[test]
fn fuzz_descriptions_parse_validate_codegen() {
    let seeds = seeds(&["tests/fixtures/specs", "examples/health/tests"], ".nix");
    let project = util::tempdir();
    util::copy_dir(&util::root().join("examples/health"), project.path());
    let desc = project.path().join("tests/vm/health.nix");
    let mut round = 0u64;
    run("description", &seeds, |bytes| {
        let Ok(text) = std::str::from_utf8(bytes) else { return };
        let mut sources = Sources::default();
        let file = sources.add("t.nix", text.to_owned());
        let (spec, _) = parse::parse(file, Path::new("t.nix"), sources.text(file));
        let mut tests: Vec<_> = spec.into_iter().collect();
        let _ = validate::validate(&mut tests, &["default".to_owned()]);
        // The whole pipeline (a file write, flake analysis of the example
        // project, codegen and an rnix parse: far dearer than the parse
        // above) on every 64th input only, so that the parser and
        // validator, where the hostile inputs land, get most of the time.
        round += 1;
        if round % 64 != 0 {
            return;
        }
        std::fs::write(&desc, bytes).expect("write");
        let config = Config::new(project.path());
        let Ok(p) = nixvm_gen::project::load(&config) else { return };
        if p.diagnostics.iter().any(|d| d.is_error()) {
            return;
        }
        if let Ok(out) = nixvm_gen::codegen::render(&p, &config) {
            let parsed = rnix::Root::parse(&out);
            assert!(
                parsed.errors().is_empty(),
                "generated code does not parse: {:?}\n{out}",
                parsed.errors()
            );
        }
    });
}

/// Flake analysis (`scan`), and `wire`, on mutated flakes.
#[test]
fn fuzz_flake_analysis_and_wire() {
    let seeds = seeds(&["tests/fixtures/flakes", "tests/fixtures/wire", "examples"], "flake.nix");
    let dir = util::tempdir();
    let flake = dir.path().join("flake.nix");
    std::fs::write(dir.path().join("m.nix"), "{ ... }: { }").expect("write");
    let opts = nixvm_gen::scaffold::wire::WireOptions {
        output: "nix/checks.generated.nix".into(),
        input_name: "nixvm-gen".into(),
        url: "github:nixvm-gen/nixvm-gen".into(),
        hydra_jobs: false,
    };
    run("flake", &seeds, |bytes| {
        std::fs::write(&flake, bytes).expect("write");
        let mut sources = Sources::default();
        let _ = nixvm_gen::flake::analyze(dir.path(), &mut sources);
        if let Ok(text) = std::str::from_utf8(bytes) {
            if let Ok(out) = nixvm_gen::scaffold::wire::wire(text, &opts) {
                assert!(
                    rnix::Root::parse(&out.text).errors().is_empty(),
                    "wire wrote broken Nix:\n{}",
                    out.text
                );
            }
        }
    });
}

/// Token-level limits: whatever passes them parses without exhausting the
/// stack (this test thread has the default 2 MiB).
#[test]
fn fuzz_nesting_limit() {
    let seeds = seeds(&["tests/fixtures/flakes", "tests/fixtures/specs"], ".nix");
    run("limits", &seeds, |bytes| {
        let Ok(text) = std::str::from_utf8(bytes) else { return };
        if nixvm_gen::limits::check_nesting(text).is_ok() {
            let _ = rnix::Root::parse(text);
        }
    });
}

/// Our linear tokenizer (`limits::tokens`) gives exactly rnix's tokens. It
/// gates every file before rnix parses it, so a difference would let a
/// file past the nesting check that rnix then parses differently. Inputs
/// whose rnix tokenizing would be slow (long `a.a.a…` runs) are refused
/// before the comparison, as in the tool.
#[test]
fn fuzz_tokens_equal_rnix() {
    let seeds = seeds(&["tests/fixtures/flakes", "tests/fixtures/specs"], ".nix");
    run("tokens", &seeds, |bytes| {
        let text = String::from_utf8_lossy(bytes);
        let ours = nixvm_gen::limits::tokens::tokenize(&text);
        if ours.rescan > 64 * text.len() as u64 + (1 << 20) {
            return;
        }
        let theirs: Vec<_> = rnix::tokenize(&text).collect();
        assert_eq!(ours.tokens, theirs, "tokens differ on {text:?}");
    });
}

/// The `.drv` reader: an accepted derivation writes back to the same bytes.
#[test]
fn fuzz_derivation_reader() {
    let seeds = seeds(&["tests/fixtures/drv"], ".drv");
    run("drv", &seeds, |bytes| {
        if let Ok(d) = nixvm_gen::store::derivation::Derivation::parse(bytes) {
            let again = nixvm_gen::store::derivation::Derivation::parse(d.to_aterm().as_bytes());
            assert!(again.is_ok(), "a parsed derivation does not re-parse");
        }
    });
}

/// The driver's readers: plan JSON and driver configuration JSON.
#[test]
fn fuzz_plan_and_config_readers() {
    let mut seeds = seeds(&["tests/fixtures/drv", "tests/goldens"], ".json");
    seeds.push(br#"{ "vms": {}, "containers": {}, "vlans": [1], "global_timeout": 1 }"#.to_vec());
    run("plan+config", &seeds, |bytes| {
        let Ok(text) = std::str::from_utf8(bytes) else { return };
        let _ = nixvm_gen::plan::Plan::from_json(text);
        let _ = nixvm_gen::driver::config::DriverConfig::from_json(Path::new("c.json"), text);
    });
}

/// The backdoor reply parser: a guest that answers garbage, fake markers or
/// a flood gets an error or a reply, never a panic or a hang past the
/// deadline.
#[test]
fn fuzz_backdoor_replies() {
    use nixvm_gen::driver::abort::Abort;
    use nixvm_gen::driver::shell::{Protocol, Shell};
    let seeds: Vec<Vec<u8>> = vec![
        b"\x01NIXVM 1 0 5\nhello".to_vec(),
        b"aGVsbG8K\n0\n".to_vec(),
        b"\x01NIXVM 1 0 0\n".to_vec(),
        b"\x01NIXVM 99 7 3\nabc\x01NIXVM 1 0 1\nx".to_vec(),
        b"not base64 !!\n\n".to_vec(),
    ];
    run("backdoor", &seeds, |bytes| {
        for protocol in [Protocol::Fast, Protocol::Stock] {
            let (ours, guest) = std::os::unix::net::UnixStream::pair().expect("socketpair");
            // The fast parser runs only after the guest accepted the helpers.
            let accept: &[u8] = if protocol == Protocol::Fast { b"\x01NIXVM 0 0 0\n" } else { b"" };
            let reply = [accept, bytes].concat();
            let writer = std::thread::spawn(move || {
                use std::io::Write;
                let mut g = guest;
                let _ = g.write_all(&reply);
                // The end of the reply: EOF, as when the guest dies; the read
                // side stays open for what the host sends (negotiation, acks).
                let _ = g.shutdown(std::net::Shutdown::Write);
                g
            });
            let mut shell = Shell::new(ours);
            shell.prefer(protocol);
            let deadline = Instant::now() + Duration::from_millis(200);
            if protocol == Protocol::Fast {
                assert_eq!(shell.negotiate(deadline, &Abort::never()).ok(), Some(Protocol::Fast));
            }
            let _ = shell.execute("true", None, deadline, &Abort::never());
            drop(writer.join().expect("writer"));
        }
    });
}
