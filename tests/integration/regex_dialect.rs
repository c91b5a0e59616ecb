//! The `matches` dialect (issue 11): every pattern that validation accepts
//! must compile in Python's `re` and match exactly the same inputs as in
//! Rust's `regex`, because the stock driver runs `re.search(p, out)` where
//! nixvm-driver runs `Regex::is_match` (with Python's `$`: `pattern::is_match`).
//!
//! Random patterns come from a grammar (literals including combining marks,
//! case-folding specials and control characters, escapes, classes, perl
//! classes, anchors and word boundaries, repetitions, groups and flags);
//! each accepted one is run by Rust and by one long-lived `python3` process
//! on random short inputs (always including the empty one).
//!
//! `NIXVM_REGEX_CASES` sets the number of patterns (default 5,000; the run
//! recorded in docs/reliability.md used 130,000); `NIXVM_REGEX_DUMP=FILE`
//! writes every disagreement there.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use nixvm_gen::spec::pattern;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestRunner};

use crate::util;

/// Characters where the two engines are most likely to disagree: combining
/// marks, case-folding specials (Kelvin sign, long s, dotted I), digits and
/// numbers outside ASCII, separators Python counts as space, joiners.
const ALPHABET: &[char] = &[
    'a', 'b', 'A', 'k', 's', 'S', '0', '7', '_', ' ', '\n', '\r', '\t', '-', '.', 'é', 'É', '\u{307}',
    '\u{212A}', 'ſ', 'ß', 'ẞ', 'İ', 'ı', '²', '½', '٣', '\u{1c}', '\u{1f}', '\u{85}', '\u{a0}', '\u{2028}',
    'Ⓐ', '‿', '\u{200d}', 'Ⅻ', '漢', '😀',
];

fn alphabet_char() -> impl Strategy<Value = char> {
    prop::sample::select(ALPHABET)
}

/// A piece of pattern that is one atom (a literal, an escape, a class, an
/// anchor).
fn atom() -> BoxedStrategy<String> {
    let escapes = prop::sample::select(vec![
        r"\.",
        r"\\",
        r"\-",
        r"\n",
        r"\t",
        r"\r",
        r"\f",
        r"\v",
        r"\a",
        r"\x41",
        r"\x0a",
        r"\u00e9",
        r"\u0307",
        r"\U0001F600",
        r"\0",
        r"\#",
        r"\ ",
        r"\<",
        r"\>",
        r"\e",
        r"\_",
        r"\*",
        r"\[",
        r"\]",
        r"\{",
        r"\}",
        r"\x{41}",
        r"\101",
        r"\N{DIGIT ONE}",
        r"\pL",
        r"\p{Greek}",
        r"\P{L}",
        r"\K",
        r"\G",
    ]);
    let perl = prop::sample::select(vec![r"\w", r"\W", r"\d", r"\D", r"\s", r"\S", "."]);
    let anchors = prop::sample::select(vec!["^", "$", r"\b", r"\B", r"\A", r"\z", r"\Z", r"\b{start}"]);
    let raw = prop::sample::select(vec!["{", "}", "]", "{2}", "{,2}", "#", "a{", "}{"]);
    prop_oneof![
        4 => alphabet_char().prop_map(|c| c.to_string()),
        2 => escapes.prop_map(str::to_owned),
        3 => perl.prop_map(str::to_owned),
        2 => anchors.prop_map(str::to_owned),
        3 => class(),
        1 => raw.prop_map(str::to_owned),
    ]
    .boxed()
}

/// A bracketed class: negation, literals, ranges, perl classes, escapes,
/// and the pieces that are special to only one engine (`&&`, `--`, `||`,
/// `[:alpha:]`, a nested `[`).
fn class() -> BoxedStrategy<String> {
    let item = prop_oneof![
        4 => alphabet_char().prop_map(|c| match c {
            ']' | '\\' | '[' | '^' => format!("\\{c}"),
            c => c.to_string(),
        }),
        2 => prop::sample::select(vec!["a-z", "0-9", "A-Z", "é-ü", "\u{300}-\u{36f}", "a-\u{212A}", "K-k"])
            .prop_map(str::to_owned),
        2 => prop::sample::select(vec![r"\w", r"\W", r"\d", r"\D", r"\s", r"\S"]).prop_map(str::to_owned),
        1 => prop::sample::select(vec![
            r"\]", r"\-", r"\b", r"\n", r"\x41", r"\u0307", "&&", "--", "||", "~~", "[:alpha:]", "[a]", "[",
            "^", "-", "]",
        ])
        .prop_map(str::to_owned),
    ];
    (any::<bool>(), prop::collection::vec(item, 1..4))
        .prop_map(|(neg, items)| format!("[{}{}]", if neg { "^" } else { "" }, items.concat()))
        .boxed()
}

fn quantifier() -> impl Strategy<Value = String> {
    let base =
        prop::sample::select(vec!["*", "+", "?", "{2}", "{0}", "{1,}", "{1,2}", "{0,1}", "{,2}", "{2,1}"]);
    let mode = prop::sample::select(vec!["", "", "", "?", "+"]);
    (base, mode).prop_map(|(b, m)| format!("{b}{m}"))
}

fn group_open() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "(",
        "(",
        "(?:",
        "(?P<g>",
        "(?P<g_1>",
        "(?P<a.b>",
        "(?P<a[0]>",
        "(?P<é>",
        "(?<g>",
        "(?i:",
        "(?s:",
        "(?m:",
        "(?x:",
        "(?-i:",
        "(?is:",
        "(?i-s:",
        "(?u:",
        "(?U:",
        "(?a:",
        "(?=",
        "(?!",
        "(?#",
    ])
}

/// Whole patterns: concatenations, alternations (with empty branches),
/// repetitions (also of repetitions and of anchors), groups, and global
/// flags at the start.
fn pattern_strategy() -> impl Strategy<Value = String> {
    let tree = atom().prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            3 => prop::collection::vec(inner.clone(), 1..4).prop_map(|v| v.concat()),
            1 => prop::collection::vec(prop_oneof![3 => inner.clone(), 1 => Just(String::new())], 2..4)
                .prop_map(|v| v.join("|")),
            3 => (inner.clone(), quantifier()).prop_map(|(a, q)| format!("{a}{q}")),
            2 => (group_open(), inner).prop_map(|(g, a)| format!("{g}{a})")),
        ]
    });
    let global = prop::sample::select(vec!["", "", "", "", "(?i)", "(?m)", "(?s)", "(?x)", "(?ims)", "(?u)"]);
    (global, tree).prop_map(|(g, t)| format!("{g}{t}"))
}

fn inputs_strategy() -> impl Strategy<Value = Vec<String>> {
    let one = prop::collection::vec(alphabet_char(), 0..7).prop_map(|v| v.into_iter().collect::<String>());
    // Command output ends with a newline: one input is another plus "\n".
    prop::collection::vec(one, 6).prop_map(|mut v| {
        let with_newline = format!("{}\n", v[0]);
        v.push(with_newline);
        v.push(String::new());
        v
    })
}

/// `python3` answering one JSON line per pattern: whether it compiles (with
/// every warning an error: a `FutureWarning` announces a change of meaning)
/// and, if so, `re.search` on each input.
const PYTHON: &str = r#"
import json, re, sys, warnings
warnings.simplefilter("error")
for line in sys.stdin:
    q = json.loads(line)
    try:
        r = re.compile(q["p"])
    except Exception as e:
        print(json.dumps({"ok": False, "err": type(e).__name__ + ": " + str(e)}), flush=True)
        continue
    print(json.dumps({"ok": True, "m": [r.search(s) is not None for s in q["i"]]}), flush=True)
"#;

struct Python {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Python {
    fn start() -> Python {
        let mut child = Command::new("python3")
            .arg("-c")
            .arg(PYTHON)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        Python { child, stdin, stdout }
    }

    /// `Err(message)` when Python refuses the pattern, else one bool per input.
    fn search(&mut self, pattern: &str, inputs: &[String]) -> Result<Vec<bool>, String> {
        let q = serde_json::json!({ "p": pattern, "i": inputs });
        writeln!(self.stdin, "{q}").expect("write to python3");
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("read from python3");
        let a: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("python3 said {line:?}: {e}"));
        if a["ok"] == true {
            Ok(a["m"].as_array().expect("m").iter().map(|b| b == true).collect())
        } else {
            Err(a["err"].as_str().unwrap_or("?").to_owned())
        }
    }
}

impl Drop for Python {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One pattern against both engines: `Ok(true)` when validation accepted
/// it and both agree, `Ok(false)` when validation refused it.
fn compare(py: &mut Python, pattern: &str, inputs: &[String]) -> Result<bool, String> {
    if pattern::check(pattern).is_err() {
        return Ok(false);
    }
    let rust =
        regex::Regex::new(pattern).map_err(|e| format!("accepted but Rust refuses {pattern:?}: {e}"))?;
    let python =
        py.search(pattern, inputs).map_err(|e| format!("accepted, but Python refuses {pattern:?}: {e}"))?;
    for (input, py_match) in inputs.iter().zip(python) {
        let rust_match = pattern::is_match(&rust, input);
        if rust_match != py_match {
            return Err(format!(
                "accepted, but {pattern:?} on {input:?}: Rust {}, Python {}",
                if rust_match { "matches" } else { "does not match" },
                if py_match { "matches" } else { "does not match" },
            ));
        }
    }
    Ok(true)
}

#[test]
fn accepted_patterns_compile_and_match_alike_in_rust_and_python() {
    if !util::require("python3", "the stock driver's regular expressions are Python's `re`") {
        return;
    }
    let cases: u32 = std::env::var("NIXVM_REGEX_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(5_000);
    let mut py = Python::start();
    let mut runner = TestRunner::new(Config { cases, failure_persistence: None, ..Config::default() });
    let strategy = (pattern_strategy(), inputs_strategy());
    // Every case runs (no stop at the first failure), so that one run
    // shows all the kinds of disagreement; the shortest are shown.
    let (mut accepted, mut failures) = (0u32, Vec::new());
    for _ in 0..cases {
        let (pattern, inputs) = strategy.new_tree(&mut runner).expect("a case").current();
        match compare(&mut py, &pattern, &inputs) {
            Ok(ok) => accepted += u32::from(ok),
            Err(e) => {
                accepted += 1;
                failures.push((pattern.chars().count(), e));
            }
        }
    }
    eprintln!(
        "regex dialect: {cases} random patterns, {accepted} accepted by validation, {} disagreements",
        failures.len()
    );
    failures.sort();
    failures.dedup();
    if let Ok(path) = std::env::var("NIXVM_REGEX_DUMP") {
        let all: Vec<&str> = failures.iter().map(|(_, e)| e.as_str()).collect();
        std::fs::write(path, all.join("\n")).expect("write the dump");
    }
    let shown: Vec<&str> = failures.iter().take(40).map(|(_, e)| e.as_str()).collect();
    assert!(failures.is_empty(), "{} disagreements, the shortest:\n{}", failures.len(), shown.join("\n"));
    // A grammar that validation (almost) always refuses would prove nothing.
    assert!(accepted * 5 >= cases, "only {accepted} of {cases} patterns were accepted");
}

/// Every disagreement the property test found, and the issue's examples:
/// validation refuses each (or, if it accepts, both engines agree).
#[test]
fn found_disagreements_stay_fixed() {
    if !util::require("python3", "the stock driver's regular expressions are Python's `re`") {
        return;
    }
    let mut py = Python::start();
    let inputs: Vec<String> = [
        "", "a", "aa", "a\n", "\n", "\u{307}", "a\u{307}", "\u{1c}", "²", "K", "\u{212A}", "ſ", "s", "İ",
        "ı", "I", "\u{a0}", "-", "\t", "active\n",
    ]
    .map(str::to_owned)
    .to_vec();
    let found = [
        // The issue's examples.
        "a**",
        "^+",
        "a{2}{3}",
        "a*+a",
        r"\B",
        // Found by the property test above.
        r"\W",
        r"\w",
        r"\b",
        r"\s",
        r"\S",
        r"[\D]",
        "(?x)\u{a0}",
        "(?x)[a \t]",
        "(?i)İ",
        "(?i:ı)",
        "(?i)[A-Z0]",
        "(?ims)Ⓐ|ı",
        "[--\\d]",
        "[--a-z\n]|a",
        "[^.||]",
        "[]-\t]*?",
        "a$\n",
        "(?P<a.b>x)",
        // Accepted, and alike thanks to `pattern::is_match`.
        "^active$",
        "(?m)^a$",
        "a$|b",
    ];
    for pattern in found {
        if let Err(e) = compare(&mut py, pattern, &inputs) {
            panic!("{e}");
        }
    }
    for accepted in ["^active$", "(?m)^a$", "a$|b"] {
        assert!(pattern::check(accepted).is_ok(), "{accepted}");
    }
}
