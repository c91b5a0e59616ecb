//! The incremental path (`nixvm_gen::incremental`, issue 16) against the
//! cold one (`project::load` + `codegen::render_with`): random edits to a
//! fixture repository (descriptions added, removed, changed, shifted by a
//! line; the flake's modules changed or broken; options changed; the cache
//! file truncated, flipped or replaced by another build's) must never make
//! the result differ, byte for byte, diagnostics included.

use std::path::{Path, PathBuf};

use nixvm_gen::cache::{Rejected, Store};
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
        }
    }
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
        }
    }
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
