//! Helpers for the driver's unit tests.

/// Whether `tool` is on `PATH`. Missing tools skip the test loudly locally
/// and fail it on CI (`CI=true`), exactly like `tests/integration/util.rs`.
pub fn require(tool: &str, why: &str) -> bool {
    let found =
        std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()));
    if !found {
        assert!(
            !std::env::var("CI").is_ok_and(|v| v == "true"),
            "`{tool}` is required on CI ({why}); .ci/run must install it"
        );
        eprintln!("\n!!! SKIPPED: `{tool}` is not installed ({why}). Run ./scripts/test.sh to install it.\n");
    }
    found
}

/// Compares `actual` with the golden file `src/driver/<rel>`; with
/// `UPDATE_GOLDENS=1` (re)writes it instead.
pub fn golden(rel: &str, actual: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/driver").join(rel);
    if std::env::var_os("UPDATE_GOLDENS").is_some() {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("create golden dir");
        }
        std::fs::write(&path, actual).expect("write golden");
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("missing golden {}: {e}; run with UPDATE_GOLDENS=1", path.display()));
    pretty_assertions::assert_eq!(
        expected,
        actual,
        "golden {} differs; UPDATE_GOLDENS=1 accepts",
        path.display()
    );
}

/// Replaces run-dependent numbers (durations) so goldens are stable.
pub fn redact(text: &str) -> String {
    let json = regex::Regex::new(r#""(durationSecs|startSecs|endSecs)": [0-9.e-]+"#).expect("valid regex");
    let at = regex::Regex::new(r#""startedAt": "[^"]*""#).expect("valid regex");
    let xml = regex::Regex::new(r#"time="[0-9.]+""#).expect("valid regex");
    let secs = regex::Regex::new(r"within [0-9]+\.[0-9] seconds").expect("valid regex");
    let text = json.replace_all(text, r#""$1": "<duration>""#);
    let text = at.replace_all(&text, r#""startedAt": "<time>""#);
    let text = xml.replace_all(&text, r#"time="<duration>""#);
    secs.replace_all(&text, "within <n> seconds").into_owned()
}
