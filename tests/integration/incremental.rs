//! The incremental path (`nixvm_gen::incremental`, issue 16) against the
//! cold one (`project::load` + `codegen::render_with`): random edits to a
//! fixture repository (descriptions added, removed, changed, shifted by a
//! line; the flake's modules changed or broken; options changed; the cache
//! file truncated, flipped or replaced by another build's, the blob file
//! damaged; the generated file rewritten, edited or removed behind the
//! cache's back) must never make the result differ, byte for byte,
//! diagnostics included, and the shortcut that finds the generated file
//! current without rendering it must never call a different file current.

use std::path::{Path, PathBuf};

use nixvm_gen::cache::{Rejected, Store, blobs_path};
use nixvm_gen::config::Config;
use nixvm_gen::diagnostic::{self, Diagnostic, Sources};
use nixvm_gen::{codegen, incremental, project};
use proptest::prelude::*;

/// Description texts; `@` is replaced by the file's stem, so names clash
/// only where a variant sets the same `name`.
const DESCRIPTIONS: &[&str] = &[
    // 0: one node, rust backend, implicit node.
    "{ nodes.machine = { ... }: { }; steps = [ { waitForUnit = \"web.service\"; } { succeed = \"curl localhost\"; expect.contains = \"ok\"; } ]; }\n",
    // 1, 9: the same explicit name: a duplicate when both are present.
    "{ name = \"shared\"; nodes.a = { ... }: { }; nodes.b = { ... }: { }; steps = [ { start = \"a\"; } { succeed = \"true\"; node = \"b\"; } ]; }\n",
    // 2: a module list, the python backend, a subtest.
    "{ modules = [ \"web\" ]; backend = \"python\"; nodes.machine = { ... }: { }; steps = [ { subtest = \"s\"; steps = [ { waitForOpenPort = 80; } ]; } ]; }\n",
    // 3: an alias among the modules, systems, curl.
    "{ modules = [ \"db\" \"default\" ]; systems = [ \"aarch64-linux\" \"x86_64-linux\" ]; nodes.m = { ... }: { }; steps = [ { http = { url = \"http://localhost/\"; status = 200; }; } ]; }\n",
    // 4: a syntax error.
    "{ nodes = ; steps = [ ] }\n",
    // 5: a warning only.
    "{ systems = [ ]; nodes.machine = { ... }: { }; steps = [ { sleep = 1; } ]; }\n",
    // 6: a function with a computed value (line numbers in the output).
    "{ pkgs, ... }:\n{\n  nodes.machine = { ... }: { };\n  steps = [\n    { succeed = \"${pkgs.hello}/bin/hello\"; expect.contains = \"Hello\"; }\n    { waitForFile = \"${pkgs.hello}/bin/hello\"; }\n  ];\n}\n",
    // 7: an unknown step key.
    "{ nodes.machine = { ... }: { }; steps = [ { waitForUnitt = \"x\"; } ]; }\n",
    // 8: a test module, a timeout, OCR.
    "{ timeout = 600; test = { skipLint = true; }; nodes.machine = { ... }: { }; steps = [ { waitForText = \"login\"; } ]; }\n",
    // 9: see 1.
    "{ name = \"shared\"; nodes.machine = { ... }: { }; steps = [ { succeed = \"echo 2\"; } ]; }\n",
    // 10: non-ASCII text before the spans.
    "# é ü ✓\n{ name = \"@-uni\"; modules = [ \"web\" ]; nodes.machine = { ... }: { }; steps = [ { succeed = \"echo é\"; } ]; }\n",
];

const FLAKES: &[&str] = &[
    "{ outputs = { self }: { nixosModules.web = ./web.nix; nixosModules.db = ./web.nix; nixosModules.default = self.nixosModules.web; }; }\n",
    "{ outputs = { self }: { nixosModules.web = ./web.nix; }; }\n",
    "{ outputs = { self }: { }; }\n",
    // A syntax error.
    "{ outputs = { self }: { nixosModules.web = ./web.nix; \n",
    "{ outputs = { self }: { nixosModules.db = ./web.nix; nixosModules.default = ./web.nix; }; }\n",
];

const SLOTS: &[&str] = &["a", "b", "c", "d", "e"];
const OUTPUTS: &[&str] = &["nix/checks.generated.nix", "checks.nix"];
const INPUTS: &[&str] = &["nixvm-gen", "nvg"];

#[derive(Clone, Debug)]
enum Edit {
    Write {
        slot: usize,
        variant: usize,
    },
    Remove {
        slot: usize,
    },
    /// A comment line in front: every span moves, the output may not.
    Shift {
        slot: usize,
    },
    Flake {
        variant: usize,
    },
    Options {
        output: usize,
        input: usize,
        hydra: bool,
    },
    TruncateCache {
        keep_per_mille: u16,
    },
    FlipCacheByte {
        at_per_mille: u16,
    },
    ForeignCache,
    FlipBlobByte {
        at_per_mille: u16,
    },
    TruncateBlobs {
        keep_per_mille: u16,
    },
    /// The generated file, as `generate` would write it now.
    Regenerate,
    /// One byte of the generated file changed, size and mtime kept.
    OutputByteChanged {
        at_per_mille: u16,
    },
    RemoveOutput,
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        4 => (0..SLOTS.len(), 0..DESCRIPTIONS.len()).prop_map(|(slot, variant)| Edit::Write { slot, variant }),
        1 => (0..SLOTS.len()).prop_map(|slot| Edit::Remove { slot }),
        2 => (0..SLOTS.len()).prop_map(|slot| Edit::Shift { slot }),
        1 => (0..FLAKES.len()).prop_map(|variant| Edit::Flake { variant }),
        1 => (0..OUTPUTS.len(), 0..INPUTS.len(), any::<bool>())
            .prop_map(|(output, input, hydra)| Edit::Options { output, input, hydra }),
        1 => (0u16..1000).prop_map(|keep_per_mille| Edit::TruncateCache { keep_per_mille }),
        1 => (0u16..1000).prop_map(|at_per_mille| Edit::FlipCacheByte { at_per_mille }),
        1 => Just(Edit::ForeignCache),
        1 => (0u16..1000).prop_map(|at_per_mille| Edit::FlipBlobByte { at_per_mille }),
        1 => (0u16..1000).prop_map(|keep_per_mille| Edit::TruncateBlobs { keep_per_mille }),
        2 => Just(Edit::Regenerate),
        1 => (0u16..1000).prop_map(|at_per_mille| Edit::OutputByteChanged { at_per_mille }),
        1 => Just(Edit::RemoveOutput),
    ]
}

struct Repo {
    _dir: tempfile::TempDir,
    cache: PathBuf,
    config: Config,
    hydra: bool,
}

impl Repo {
    fn new() -> Repo {
        let dir = crate::util::tempdir();
        let cache = dir.path().join("cache");
        std::fs::create_dir_all(dir.path().join("flake/tests/vm")).unwrap();
        std::fs::write(dir.path().join("flake/web.nix"), "{ ... }: { }\n").unwrap();
        std::fs::write(dir.path().join("flake/flake.nix"), FLAKES[0]).unwrap();
        let config = Config::new(dir.path().join("flake"));
        let mut repo = Repo { _dir: dir, cache, config, hydra: false };
        for (slot, variant) in [(0, 0), (1, 2), (2, 6)] {
            repo.apply(&Edit::Write { slot, variant });
        }
        repo
    }

    fn flake(&self) -> &Path {
        &self.config.flake_dir
    }

    fn description(&self, slot: usize) -> PathBuf {
        self.flake().join(format!("tests/vm/{}.nix", SLOTS[slot]))
    }

    fn store(&self) -> Store {
        Store::at(&self.cache)
    }

    fn pack(&self) -> PathBuf {
        self.store().pack_path(self.flake())
    }

    fn apply(&mut self, edit: &Edit) {
        match *edit {
            Edit::Write { slot, variant } => {
                let text = DESCRIPTIONS[variant].replace('@', SLOTS[slot]);
                std::fs::write(self.description(slot), text).unwrap();
            }
            Edit::Remove { slot } => {
                let _ = std::fs::remove_file(self.description(slot));
            }
            Edit::Shift { slot } => {
                if let Ok(text) = std::fs::read_to_string(self.description(slot)) {
                    std::fs::write(self.description(slot), format!("# shifted\n{text}")).unwrap();
                }
            }
            Edit::Flake { variant } => {
                std::fs::write(self.flake().join("flake.nix"), FLAKES[variant]).unwrap()
            }
            Edit::Options { output, input, hydra } => {
                self.config.output = OUTPUTS[output].into();
                self.config.input_name = INPUTS[input].into();
                self.hydra = hydra;
            }
            Edit::TruncateCache { keep_per_mille } => {
                if let Ok(bytes) = std::fs::read(self.pack()) {
                    let keep = bytes.len() * usize::from(keep_per_mille) / 1000;
                    std::fs::write(self.pack(), &bytes[..keep]).unwrap();
                }
            }
            Edit::FlipCacheByte { at_per_mille } => {
                if let Ok(mut bytes) = std::fs::read(self.pack())
                    && !bytes.is_empty()
                {
                    let at = bytes.len() * usize::from(at_per_mille) / 1000;
                    bytes[at] ^= 0x01;
                    std::fs::write(self.pack(), &bytes).unwrap();
                }
            }
            Edit::ForeignCache => {
                Store::with_identity(&self.cache, "0.0.0 another build").write(&self.pack(), &[]).unwrap();
            }
            Edit::FlipBlobByte { at_per_mille } => {
                if let Ok(mut bytes) = std::fs::read(blobs_path(&self.pack()))
                    && !bytes.is_empty()
                {
                    let at = bytes.len() * usize::from(at_per_mille) / 1000;
                    bytes[at] ^= 0x01;
                    std::fs::write(blobs_path(&self.pack()), &bytes).unwrap();
                }
            }
            Edit::TruncateBlobs { keep_per_mille } => {
                if let Ok(bytes) = std::fs::read(blobs_path(&self.pack())) {
                    let keep = bytes.len() * usize::from(keep_per_mille) / 1000;
                    std::fs::write(blobs_path(&self.pack()), &bytes[..keep]).unwrap();
                }
            }
            Edit::Regenerate => {
                if let Some(Ok(text)) = cold(self).file {
                    std::fs::create_dir_all(self.output().parent().unwrap()).unwrap();
                    std::fs::write(self.output(), text).unwrap();
                }
            }
            Edit::OutputByteChanged { at_per_mille } => {
                edit_keeping_size_and_mtime(&self.output(), at_per_mille)
            }
            Edit::RemoveOutput => {
                let _ = std::fs::remove_file(self.output());
            }
        }
    }

    fn output(&self) -> PathBuf {
        self.config.output_path()
    }
}

/// Changes one byte of the file at `path`, then sets its mtime back: only
/// ctime (and the contents) tell.
fn edit_keeping_size_and_mtime(path: &Path, at_per_mille: u16) {
    let Ok(mut bytes) = std::fs::read(path) else { return };
    if bytes.is_empty() {
        return;
    }
    let mtime = std::fs::metadata(path).unwrap().modified().unwrap();
    let at = bytes.len() * usize::from(at_per_mille) / 1000;
    bytes[at] = if bytes[at] == b'x' { b'y' } else { b'x' };
    std::fs::write(path, &bytes).unwrap();
    std::fs::File::options().write(true).open(path).unwrap().set_modified(mtime).unwrap();
}

/// Everything a run shows the user: diagnostics (as data, rendered, as
/// JSON), and the generated file or the error that stopped it.
#[derive(Debug, PartialEq)]
struct Outcome {
    diagnostics: Vec<Diagnostic>,
    rendered: String,
    json: Vec<String>,
    file: Option<Result<String, String>>,
    tests: usize,
}

fn outcome(
    diagnostics: &[Diagnostic],
    sources: &Sources,
    file: Option<Result<String, String>>,
    tests: usize,
) -> Outcome {
    Outcome {
        diagnostics: diagnostics.to_vec(),
        rendered: diagnostic::render(diagnostics, sources, false),
        json: diagnostics.iter().map(|d| d.to_json(sources).to_string()).collect(),
        file,
        tests,
    }
}

fn cold(repo: &Repo) -> Outcome {
    let project = project::load(&repo.config).expect("the fixture loads");
    let file = (!project.has_errors())
        .then(|| codegen::render_with(&project, &repo.config, repo.hydra).map_err(|e| e.to_string()));
    outcome(&project.diagnostics, &project.sources, file, project.tests.len())
}

fn incremental(repo: &Repo, store: Option<Store>) -> (Outcome, incremental::Stats, bool) {
    let mut run = incremental::load(&repo.config, store).expect("the fixture loads");
    let file = (!run.has_errors()).then(|| run.render(&repo.config, repo.hydra).map_err(|e| e.to_string()));
    let wrote = run.save().expect("the cache is written");
    (outcome(&run.diagnostics, &run.sources, file, run.tests()), run.stats(), wrote)
}

/// What `check` does with the generated file: the cache's shortcut, or
/// render and compare (recording a match). Returns whether the file is
/// current, and whether the shortcut said so.
fn check_output(repo: &Repo, margin: Option<std::time::Duration>) -> (bool, Option<incremental::Verdict>) {
    let mut run = incremental::load(&repo.config, Some(repo.store())).expect("the fixture loads");
    if let Some(margin) = margin {
        run.racy_margin = margin;
    }
    if run.has_errors() {
        return (false, None);
    }
    let path = repo.output();
    let Ok(verdict) = run.known_current(&repo.config, repo.hydra, &path) else {
        return (false, None);
    };
    let current = match verdict {
        Some(_) => true,
        None => match run.render(&repo.config, repo.hydra) {
            Ok(text) => {
                let (same, seen) = incremental::compare_output(&path, text.as_bytes()).unwrap();
                if same {
                    run.record_output(&text, seen);
                }
                same
            }
            Err(_) => false,
        },
    };
    run.save().expect("the cache is written");
    (current, verdict)
}

/// Whether the generated file is what a cold run renders.
fn truly_current(repo: &Repo) -> bool {
    match cold(repo).file {
        Some(Ok(text)) => std::fs::read(repo.output()).is_ok_and(|b| b == text.as_bytes()),
        _ => false,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn incremental_runs_equal_cold_runs(edits in prop::collection::vec(edit(), 1..14)) {
        let mut repo = Repo::new();
        incremental(&repo, Some(repo.store()));
        for (n, e) in edits.iter().enumerate() {
            repo.apply(e);
            let expected = cold(&repo);
            let (warm, stats, _) = incremental(&repo, Some(repo.store()));
            prop_assert_eq!(&warm, &expected, "after edit {} ({:?}) of {:?}", n, e, edits);
            let (uncached, stats_cold, wrote) = incremental(&repo, None);
            prop_assert_eq!(&uncached, &expected);
            prop_assert_eq!((stats_cold.reused, wrote), (0, false), "--no-cache reads and writes nothing");
            if matches!(e, Edit::TruncateCache { .. } | Edit::FlipCacheByte { .. } | Edit::ForeignCache)
                && stats.rejected.is_some()
            {
                prop_assert!(matches!(stats.rejected, Some(Rejected::Damaged | Rejected::Foreign)), "{:?}", stats);
            }
            // Nothing changed since: everything without diagnostics is
            // reused, the result is the same, and nothing is written.
            let (again, stats, wrote) = incremental(&repo, Some(repo.store()));
            prop_assert_eq!(&again, &expected);
            prop_assert_eq!(stats.reused, stats.descriptions - stats.diagnosed, "{:?}", stats);
            prop_assert!(!wrote, "an unchanged run rewrote the cache");
            // `check` on the generated file, twice: the second may take
            // the shortcut; neither may call a different file current.
            for _ in 0..2 {
                let (current, verdict) = check_output(&repo, None);
                prop_assert_eq!(current, truly_current(&repo), "after edit {} ({:?}), {:?}", n, e, verdict);
            }
        }
    }
}

/// The shortcut's cases one by one, with a short racy margin (the real
/// one is two seconds) and waits longer than it.
#[test]
fn the_generated_file_is_trusted_by_its_stamp_only_while_it_is_unchanged() {
    use incremental::Verdict::{ContentHash, Stamp};
    let margin = std::time::Duration::from_millis(30);
    let settle = || std::thread::sleep(margin * 3);
    let mut repo = Repo::new();
    repo.apply(&Edit::Regenerate);
    let good = std::fs::read(repo.output()).unwrap();
    settle();
    assert_eq!(check_output(&repo, Some(margin)), (true, None), "first: rendered and compared");
    assert_eq!(check_output(&repo, Some(margin)), (true, Some(Stamp)));
    // Edited behind our back, same size, mtime restored: ctime tells.
    settle();
    edit_keeping_size_and_mtime(&repo.output(), 500);
    assert_eq!(check_output(&repo, Some(margin)), (false, None), "same-size edit");
    // Put back (a new mtime): the contents hash as verified.
    std::fs::write(repo.output(), &good).unwrap();
    settle();
    assert_eq!(check_output(&repo, Some(margin)), (true, Some(ContentHash)), "rewritten");
    assert_eq!(check_output(&repo, Some(margin)), (true, Some(Stamp)));
    // Touched only.
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(5);
    std::fs::File::options().write(true).open(repo.output()).unwrap().set_modified(later).unwrap();
    assert_eq!(check_output(&repo, Some(margin)), (true, Some(ContentHash)), "touched");
    // Replaced by a copy (another inode), then by a different file of the
    // same size.
    let copy = repo.output().with_extension("copy");
    std::fs::write(&copy, &good).unwrap();
    std::fs::rename(&copy, repo.output()).unwrap();
    assert_eq!(check_output(&repo, Some(margin)), (true, Some(ContentHash)), "replaced by a copy");
    let mut other = good.clone();
    other[good.len() / 2] ^= 0x01;
    std::fs::write(&copy, &other).unwrap();
    std::fs::rename(&copy, repo.output()).unwrap();
    assert_eq!(check_output(&repo, Some(margin)), (false, None), "replaced by another file");
    // A description changed without changing the output (a comment): the
    // digest is the same, the stamp still counts.
    std::fs::write(repo.output(), &good).unwrap();
    settle();
    assert_eq!(check_output(&repo, Some(margin)), (true, Some(ContentHash)));
    let text = std::fs::read_to_string(repo.description(0)).unwrap();
    std::fs::write(repo.description(0), format!("{text}# a comment\n")).unwrap();
    assert_eq!(check_output(&repo, Some(margin)), (true, Some(Stamp)), "same output, other description");
    // An option that changes the output: the digest differs.
    repo.apply(&Edit::Options { output: 0, input: 1, hydra: false });
    assert_eq!(check_output(&repo, Some(margin)), (false, None), "another input name");
}

/// With the real margin, a file verified right after it was written is
/// never trusted by its stamp: a same-size write in the same timestamp
/// tick would leave the stamp as it was.
#[test]
fn a_racy_stamp_is_not_trusted() {
    let mut repo = Repo::new();
    repo.apply(&Edit::Regenerate);
    assert_eq!(check_output(&repo, None), (true, None));
    assert_eq!(
        check_output(&repo, None),
        (true, Some(incremental::Verdict::ContentHash)),
        "not by its stamp"
    );
    edit_keeping_size_and_mtime(&repo.output(), 300);
    assert_eq!(check_output(&repo, None), (false, None), "edited in the same tick");
}

#[test]
fn one_changed_description_is_the_only_one_parsed() {
    let mut repo = Repo::new();
    let (first, stats, wrote) = incremental(&repo, Some(repo.store()));
    assert_eq!((stats.reused, stats.descriptions, wrote), (0, 3, true));
    assert!(first.file.as_ref().is_some_and(|f| f.is_ok()), "{first:?}");
    repo.apply(&Edit::Write { slot: 1, variant: 8 });
    let (warm, stats, wrote) = incremental(&repo, Some(repo.store()));
    assert_eq!((stats.reused, wrote), (2, true));
    assert_eq!(warm, cold(&repo));
}

#[test]
fn a_damaged_cache_is_rebuilt() {
    let mut repo = Repo::new();
    incremental(&repo, Some(repo.store()));
    for damage in [
        Edit::TruncateCache { keep_per_mille: 500 },
        Edit::FlipCacheByte { at_per_mille: 700 },
        Edit::ForeignCache,
    ] {
        repo.apply(&damage);
        let (warm, stats, wrote) = incremental(&repo, Some(repo.store()));
        assert!(
            matches!(stats.rejected, Some(Rejected::Damaged | Rejected::Foreign)),
            "{damage:?}: {stats:?}"
        );
        assert_eq!((stats.reused, wrote), (0, true), "{damage:?}");
        assert_eq!(warm, cold(&repo));
        let (_, stats, _) = incremental(&repo, Some(repo.store()));
        assert_eq!((stats.rejected, stats.reused), (None, 3), "{damage:?}: rebuilt");
    }
}

/// The CLI: `check` and `generate` use the cache in NIXVM_GEN_CACHE_DIR,
/// `--no-cache` leaves it alone, and the results agree.
#[test]
fn the_cli_uses_the_cache_unless_told_not_to() {
    let repo = Repo::new();
    let cli = |args: &[&str]| {
        let mut cmd = crate::util::nixvm_gen();
        cmd.env("NIXVM_GEN_CACHE_DIR", &repo.cache).arg("--flake").arg(repo.flake()).args(args);
        crate::util::run(&mut cmd)
    };
    let out = cli(&["--no-cache", "generate"]);
    crate::util::assert_code(&out, 0);
    assert!(!repo.cache.exists(), "--no-cache wrote the cache");
    let out = cli(&["--verbose", "check"]);
    crate::util::assert_code(&out, 0);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cache: 0 of 3 description(s) reused (no cache yet)"), "{err}");
    let out = cli(&["--verbose", "check"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cache: 3 of 3 description(s) reused"), "{err}");
    std::fs::write(repo.description(0), DESCRIPTIONS[8]).unwrap();
    let out = cli(&["--verbose", "check"]);
    crate::util::assert_code(&out, 1);
    assert!(String::from_utf8_lossy(&out.stderr).contains("cache: 2 of 3 description(s) reused"));
    let cached = cli(&["check"]);
    let uncached = cli(&["--no-cache", "check"]);
    assert_eq!((cached.stdout, cached.stderr), (uncached.stdout, uncached.stderr));
}
