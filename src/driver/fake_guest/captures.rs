//! Captures against the fake guest: a captured value reaches later commands
//! byte for byte as `$NAME`, with both framings, and is never run.

use base64::Engine;
use proptest::prelude::*;

use super::*;
use crate::guest::captures::GUEST_CAPTURE_DIR;
use crate::guest::shell_quote;

fn capturing(command: String, name: &str) -> Action {
    Action::Execute { command, expect: Expect::default(), capture: Some(name.into()) }
}

/// A step that passes when `$name` is exactly `value` (compared as base64,
/// so every byte counts).
fn holds(name: &str, value: &str) -> Action {
    let want = base64::engine::general_purpose::STANDARD.encode(value);
    Action::Succeed {
        command: format!("printf '%s' \"${name}\" | base64 -w 0"),
        expect: Expect { equals: Some(want), ..Expect::default() },
        capture: None,
    }
}

/// Values that would do harm if pasted into a command: quotes, command
/// substitution, backquotes, globs, newlines, non-ASCII, and a marker file
/// that exists only if something ran.
fn hostile(marker: &Path) -> Vec<String> {
    let m = marker.display();
    vec![
        String::new(),
        "plain".into(),
        format!("$(touch {m})"),
        format!("`touch {m}`"),
        format!("'; touch {m}; '"),
        format!("\"; touch {m}; \""),
        format!("x\ntouch {m}\n"),
        "\n\nleading newlines and trailing spaces  ".into(),
        "* ? [a-z] ~ {a,b} $HOME ${PATH} \\ \\\\n".into(),
        "naïve 東京 🦀 \u{7f} \u{1b}[31m".into(),
        "a\tb\rc".into(),
    ]
}

#[test]
fn hostile_values_reach_later_commands_exactly_and_never_run() {
    for protocol in [Protocol::Fast, Protocol::Stock] {
        let Some(mut h) = harness_with("", protocol) else { return };
        let marker = h.tmp.path().join("pwned");
        for (i, value) in hostile(&marker).iter().enumerate() {
            let name = format!("V{i}");
            h.ok(capturing(format!("printf '%s\\n\\n' {}", shell_quote(value)), &name));
            // Trailing newlines are trimmed, nothing else.
            h.ok(holds(&name, value.trim_end_matches('\n')));
        }
        // Every earlier capture is still there for a later command.
        h.ok(holds("V1", "plain"));
        let stored = h.tmp.path().join("shared-xchg/.nixvm-captures/V2");
        assert_eq!(std::fs::read_to_string(stored).unwrap(), format!("$(touch {})", marker.display()));
        assert!(!marker.exists(), "{protocol:?}: a captured value was executed");
    }
}

#[test]
fn every_capturing_step_stores_its_output() {
    let Some(mut h) = harness("") else { return };
    h.ok(Action::Succeed {
        command: "echo one".into(),
        expect: Expect::default(),
        capture: Some("A".into()),
    });
    h.ok(Action::WaitUntilSucceeds {
        command: "echo two".into(),
        expect: Expect { contains: vec!["tw".into()], ..Expect::default() },
        capture: Some("B".into()),
    });
    // `execute` accepts any exit status and still captures.
    h.ok(Action::Execute {
        command: "echo three; exit 3".into(),
        expect: Expect::default(),
        capture: Some("C".into()),
    });
    h.ok(holds("A", "one"));
    h.ok(holds("B", "two"));
    h.ok(holds("C", "three"));
    // Commands of every kind see them.
    h.ok(Action::Fail { command: "[ \"$A$B$C\" = onetwothree ] && false".into() });
    h.ok(Action::WaitUntilFails { command: "[ \"$A\" = one ] && false".into() });
    assert_eq!(h.captures, ["A", "B", "C"]);
}

#[test]
fn execute_checks_the_exit_code_only_when_asked() {
    let Some(mut h) = harness("") else { return };
    h.ok(Action::Execute { command: "exit 7".into(), expect: Expect::default(), capture: None });
    let expect = Expect { exit_code: Some(7.into()), contains: vec!["x".into()], ..Expect::default() };
    h.ok(Action::Execute { command: "echo x; exit 7".into(), expect: expect.clone(), capture: None });
    let f =
        h.failure(&step(Action::Execute { command: "echo x; exit 1".into(), expect, capture: None }, 5.0));
    assert!(f.message.contains("exited with 1, expected 7"), "{}", f.message);
}

#[test]
fn a_value_with_nul_fails_the_step_and_names_the_capture() {
    let Some(mut h) = harness("") else { return };
    let f = h.failure(&step(capturing("printf 'a\\0b'".into(), "N"), 5.0));
    assert!(f.message.contains("capture `N`: the output contains a NUL byte"), "{}", f.message);
}

#[test]
fn messages_show_the_command_as_written() {
    let Some(mut h) = harness("") else { return };
    h.ok(capturing("echo t".into(), "T"));
    let f = h.failure(&step(
        Action::Succeed { command: "false".into(), expect: Expect::default(), capture: None },
        5.0,
    ));
    assert_eq!(f.command.as_deref(), Some("false"));
    assert!(!f.message.contains(GUEST_CAPTURE_DIR), "{}", f.message);
}

/// A whole run: a capture on one step is read by a later step of the plan.
#[test]
fn a_plan_passes_a_value_between_steps() {
    let steps =
        vec![step(capturing("echo s3cr3t".into(), "TOKEN"), 10.0), step(holds("TOKEN", "s3cr3t"), 10.0)];
    let Some(fake) = FakeRun::new("", steps) else { return };
    let (outcome, log) = fake.run(&Abort::never());
    assert_eq!(outcome.exit_code(), 0, "{}", text(&log));
}

fn value_strategy() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("'".to_string()),
        Just("\"".to_string()),
        Just("$(".to_string()),
        Just("`".to_string()),
        Just("\\".to_string()),
        Just("\n".to_string()),
        Just("${X}".to_string()),
        Just(";".to_string()),
        Just("é東".to_string()),
        "[ -~]{0,6}",
    ];
    prop::collection::vec(piece, 0..8).prop_map(|p| p.concat())
}

#[test]
fn arbitrary_values_reach_later_commands_exactly() {
    let Some(h) = harness("") else { return };
    let marker = h.tmp.path().join("pwned");
    let h = std::cell::RefCell::new(h);
    let count = std::cell::Cell::new(0);
    let mut runner =
        proptest::test_runner::TestRunner::new(ProptestConfig { cases: 48, ..ProptestConfig::default() });
    runner
        .run(&value_strategy(), |value| {
            count.set(count.get() + 1);
            let name = format!("P{}", count.get());
            let mut h = h.borrow_mut();
            let stored = h.run(&step(capturing(format!("printf '%s' {}", shell_quote(&value)), &name), 10.0));
            prop_assert!(stored.is_ok(), "capturing {value:?}: {stored:?}");
            let seen = h.run(&step(holds(&name, value.trim_end_matches('\n')), 10.0));
            prop_assert!(seen.is_ok(), "reading {value:?}: {seen:?}");
            Ok(())
        })
        .unwrap();
    assert!(!marker.exists());
}
