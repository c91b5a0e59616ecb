//! Unit tests of the description parser.

mod unit {
    use super::super::*;
    use crate::spec::{ACTION_KEYS, Expect};

    fn parse_ok(text: &str) -> TestSpec {
        let (spec, diags) = parse(FileId(0), Path::new("tests/vm/t.nix"), text);
        assert!(diags.is_empty(), "{diags:#?}");
        spec.expect("spec")
    }

    fn codes(text: &str) -> Vec<&'static str> {
        parse(FileId(0), Path::new("tests/vm/t.nix"), text).1.iter().map(|d| d.code).collect()
    }

    #[test]
    fn key_names_are_the_backquoted_keys() {
        use super::super::convert::key_name;
        let keys = ACTION_KEYS.iter().chain(STEP_MODIFIERS).chain(STEP_SIBLINGS.iter().map(|(k, _)| k));
        for key in keys.chain(["", "x", "expect", "succeed.", "é"].iter()) {
            assert_eq!(key_name("", key), format!("`{key}`"));
        }
        for key in EXPECT_KEYS.iter().chain(HTTP_KEYS).chain(["", "contain", "url"].iter()) {
            assert_eq!(key_name("expect.", key), format!("`expect.{key}`"));
            assert_eq!(key_name("http.", key), format!("`http.{key}`"));
        }
    }

    #[test]
    fn commands_over_the_guest_argument_limit_are_refused() {
        let limit = super::super::checks::MAX_COMMAND_BYTES;
        let spec =
            |n: usize| format!("{{ nodes.m = {{}}; steps = [ {{ succeed = \"{}\"; }} ]; }}", "x".repeat(n));
        assert!(codes(&spec(limit)).is_empty());
        assert_eq!(codes(&spec(limit + 1)), ["command_too_long"]);
        let (_, diags) = parse(FileId(0), Path::new("tests/vm/t.nix"), &spec(128 * 1024 + 1));
        let d = &diags[0];
        assert!(d.message.contains(&format!("limit is {limit} bytes")), "{}", d.message);
        assert!(d.span.is_some());
    }

    #[test]
    fn captures_and_execute() {
        let spec = parse_ok(
            r#"{ nodes.m = {}; steps = [
              { succeed = "cat /t"; capture = "TOKEN"; }
              { execute = "curl x"; capture = "_s1"; expect.exitCode = 7; }
              { waitUntilSucceeds = "cat /u"; capture = "U"; }
              { execute = "true"; }
            ]; }"#,
        );
        let captures: Vec<Option<&str>> = spec.steps.iter().map(|s| s.action.capture()).collect();
        assert_eq!(captures, [Some("TOKEN"), Some("_s1"), Some("U"), None]);
        assert_eq!(
            spec.steps[1].action,
            Action::Execute {
                command: "curl x".into(),
                expect: Expect { exit_code: Some(7.into()), ..Expect::default() },
                capture: Some("_s1".into()),
            }
        );
        assert_eq!(spec.steps[3].action.default_timeout(), Some(120.0));
        // Every mistake at once, each with its own code.
        assert_eq!(
            codes(
                r#"{ nodes.m = {}; steps = [
                  { succeed = "a"; capture = "A"; }
                  { succeed = "b"; capture = "A"; }
                  { succeed = "c"; capture = "HOME"; }
                  { succeed = "d"; capture = "9x"; }
                  { succeed = "e"; capture = 1; }
                  { fail = "f"; capture = "F"; }
                  { succeed = "g"; capture = "NIXVM_X"; }
                ]; }"#
            ),
            [
                "capture_reused",
                "capture_reserved",
                "invalid_capture_name",
                "wrong_type",
                "misplaced_step_key",
                "capture_reserved"
            ]
        );
    }

    #[test]
    fn systemd_steps() {
        let spec = parse_ok(
            r#"{ nodes.m = {}; steps = [
              { systemctl = "--no-pager show 'x y'"; user = "alice"; expect.exitCode = 0; capture = "SHOW"; }
              { requireUnitState = "a.service"; state = "inactive"; user = "bob"; }
              { requireUnitState = "getty@tty1.service"; }
              { startJob = "a.service"; timeout = 5; }
              { stopJob = "a.service"; }
            ]; }"#,
        );
        assert_eq!(
            spec.steps[0].action,
            Action::Systemctl {
                query: "--no-pager show 'x y'".into(),
                user: Some("alice".into()),
                expect: Expect { exit_code: Some(0.into()), ..Expect::default() },
                capture: Some("SHOW".into()),
            }
        );
        assert_eq!(spec.steps[0].action.capture(), Some("SHOW"));
        assert_eq!(
            spec.steps[1].action,
            Action::RequireUnitState {
                unit: "a.service".into(),
                state: "inactive".into(),
                user: Some("bob".into())
            }
        );
        assert_eq!(
            spec.steps[2].action,
            Action::RequireUnitState {
                unit: "getty@tty1.service".into(),
                state: "active".into(),
                user: None
            }
        );
        assert_eq!(spec.steps[3].action, Action::StartJob { unit: "a.service".into(), user: None });
        assert_eq!(spec.steps[3].effective_timeout(), Some(5.0.into()));
        // The stock methods take no timeout; `execute`'s default bounds them.
        assert_eq!(spec.steps[4].effective_timeout(), Some(900.0.into()));
        assert_eq!(
            codes(
                r#"{ nodes.m = {}; steps = [
                  { startJob = "-x.service"; }
                  { stopJob = "a b"; }
                  { systemctl = "start a"; user = "--help"; }
                  { requireUnitState = "a"; state = "actve"; }
                  { requireUnitState = "a"; state = 1; }
                  { systemctl = " "; }
                  { startJob = "a"; state = "active"; }
                  { waitForUnit = "a"; state = "active"; }
                  { requireUnitState = "a"; expect.exitCode = 0; }
                ]; }"#
            ),
            [
                "option_like_value",
                "unsafe_unit_name",
                "option_like_value",
                "unknown_unit_state",
                "wrong_type",
                "empty_command",
                "misplaced_step_key",
                "misplaced_step_key",
                "misplaced_step_key"
            ]
        );
    }

    #[test]
    fn host_steps() {
        let spec = parse_ok(
            r#"{ pkgs, ... }: { nodes.m = {}; steps = [
              { copyFromHost = "files/app.conf"; target = "/etc/app/app.conf"; }
              { copyFromHost = "/nix/store/00000000000000000000000000000000-x/share"; target = "/srv/x"; }
              { copyFromHost = ./files/app.conf; target = "/etc/a"; }
              { forwardPort = 8080; guestPort = 3000; }
              { forwardPort = 2222; }
            ]; }"#,
        );
        // A file next to the description: inside the flake's source in the store.
        let placeholder = crate::spec::computed::placeholder;
        assert_eq!(
            spec.steps[0].action,
            Action::CopyFromHost { source: placeholder(0), target: "/etc/app/app.conf".into() }
        );
        assert_eq!(spec.computed[0].expr, "\"${self}/tests/vm/files/app.conf\"");
        // A literal store path stays; a path value becomes its store path.
        let Action::CopyFromHost { source, .. } = &spec.steps[1].action else { panic!() };
        assert!(source.starts_with("/nix/store/"));
        assert_eq!(
            spec.steps[2].action,
            Action::CopyFromHost { source: placeholder(1), target: "/etc/a".into() }
        );
        assert_eq!(spec.computed[1].expr, "\"${(builtins.elemAt description.steps 2).copyFromHost}\"");
        for c in &spec.computed {
            assert_eq!(c.pattern, Some(crate::spec::names::STORE_PATH_PATTERN));
        }
        assert_eq!(
            spec.steps[3].action,
            Action::ForwardPort { host_port: 8080.into(), guest_port: 3000.into() }
        );
        assert_eq!(
            spec.steps[4].action,
            Action::ForwardPort { host_port: 2222.into(), guest_port: 80.into() }
        );
        assert_eq!(
            codes(
                r#"{ nodes.m = {}; steps = [
                  { copyFromHost = "../secret"; target = "/etc/a"; }
                  { copyFromHost = "/etc/shadow"; target = "/etc/a"; }
                  { copyFromHost = "a"; target = "etc/a"; }
                  { copyFromHost = "a"; target = "/etc/a b"; }
                  { copyFromHost = "a"; }
                  { forwardPort = 0; }
                  { forwardPort = 80; targetDir = "x"; }
                ]; }"#
            ),
            [
                "host_path_outside",
                "host_path_outside",
                "relative_guest_path",
                "unsafe_path",
                "missing_field",
                "port_out_of_range",
                "misplaced_step_key"
            ]
        );
    }

    #[test]
    fn minimal_description() {
        let spec = parse_ok(r#"{ nodes.machine = {}; steps = [ { waitForUnit = "a.service"; } ]; }"#);
        assert_eq!(spec.name, "t");
        assert_eq!(spec.nodes.keys().collect::<Vec<_>>(), ["machine"]);
        assert_eq!(spec.steps[0].node.as_deref(), Some("machine"));
        assert_eq!(spec.steps[0].action, Action::WaitForUnit { unit: "a.service".into(), user: None });
    }

    #[test]
    fn every_action() {
        let spec = parse_ok(
            r#"{
              nodes = { a = {}; b = {}; };
              steps = [
                { waitForUnit = "u"; user = "alice"; node = "a"; timeout = 5; }
                { waitForOpenPort = 80; addr = "::1"; node = "a"; }
                { waitForClosedPort = 81; node = "b"; }
                { waitForFile = "/f"; node = "a"; }
                { waitForOpenUnixSocket = "/run/s"; datagram = true; node = "a"; }
                { waitForConsoleText = "login: ?$"; node = "a"; }
                { succeed = "true"; expect = { contains = "x"; equals = "y"; matches = "z+"; exitCode = 3; }; node = "a"; }
                { fail = "false"; node = "a"; }
                { waitUntilSucceeds = "x"; expect.contains = "ok"; node = "a"; }
                { waitUntilFails = "x"; node = "a"; timeout = 0.5; }
                { execute = "x"; capture = "X"; node = "a"; }
                { systemctl = "restart u"; node = "a"; }
                { requireUnitState = "u"; node = "a"; }
                { startJob = "u"; node = "a"; }
                { stopJob = "u"; user = "alice"; node = "a"; }
                { sleep = 2; }
                { http = { url = "http://h"; status = 404; contains = null; }; node = "b"; }
                { snapshot = "s"; } { restore = "s"; }
                { start = "a"; } { shutdown = true; node = "b"; } { waitForShutdown = "b"; } { crash = "a"; }
                { reboot = "a"; } { block = "a"; } { unblock = "a"; }
                { copyFromVm = "/log"; targetDir = "logs"; node = "a"; }
                { copyFromHost = "/nix/store/00000000000000000000000000000000-a"; target = "/etc/app.conf"; node = "a"; }
                { forwardPort = 8080; node = "a"; }
                { screenshot = "s"; node = "a"; }
                { sendKeys = [ "ctrl-alt-f2" "A" ]; node = "a"; }
                { sendChars = "root\n"; node = "a"; }
                { waitUntilTtyMatches = "login: "; tty = 2; node = "a"; }
                { dumpTtyContents = 63; node = "a"; }
                { waitForText = "Hello"; node = "a"; }
                { waitForX = "a"; }
                { waitForWindow = "xterm"; node = "b"; }
                { subtest = "t"; steps = [ { sleep = 0.5; } ]; }
              ];
            }"#,
        );
        assert_eq!(spec.steps.len(), 38);
        let keys: Vec<&str> = spec.steps.iter().map(|s| s.action.key()).collect();
        // `python` needs the Python backend: `python_step_needs_the_python_backend`.
        let expected: Vec<&str> = ACTION_KEYS.iter().copied().filter(|k| *k != "python").collect();
        assert_eq!(keys, expected);
        assert_eq!(spec.steps[0].timeout, Some(5.0.into()));
        assert_eq!(spec.steps[20].node.as_deref(), Some("b"));
        assert_eq!(
            (spec.steps[21].action.clone(), spec.steps[21].node.as_deref()),
            (Action::WaitForShutdown, Some("b"))
        );
        assert_eq!(
            spec.steps[4].action,
            Action::WaitForOpenUnixSocket { path: "/run/s".into(), datagram: true }
        );
        assert_eq!(
            spec.steps[6].action,
            Action::Succeed {
                command: "true".into(),
                expect: Expect {
                    contains: vec!["x".into()],
                    equals: Some("y".into()),
                    matches: Some("z+".into()),
                    exit_code: Some(3.into()),
                    ..Expect::default()
                },
                capture: None,
            }
        );
        assert_eq!(
            spec.steps[16].action,
            Action::Http { url: "http://h".into(), status: 404.into(), contains: None }
        );
        assert_eq!(spec.steps[30].action, Action::SendKeys { keys: vec!["ctrl-alt-f2".into(), "A".into()] });
        assert_eq!(
            spec.steps[32].action,
            Action::WaitUntilTtyMatches { tty: 2.into(), regex: "login: ".into() }
        );
        assert_eq!(
            (spec.steps[35].action.clone(), spec.steps[35].node.as_deref()),
            (Action::WaitForX, Some("a"))
        );
    }

    #[test]
    fn all_mistakes_are_reported() {
        let c = codes(
            r#"{ nodes.m = {}; nme = "x"; steps = [ { succed = "x"; } { waitForOpenPort = 70000; } { sleep = 1; fail = "x"; } ]; }"#,
        );
        assert_eq!(c, ["unknown_top_level_key", "unknown_step_key", "port_out_of_range", "multiple_actions"]);
    }

    #[test]
    fn top_level_function_is_a_description() {
        let spec = parse_ok(
            r#"{ pkgs, nodes, ... }: { nodes.m = {}; steps = [ { succeed = "${pkgs.hello}/bin/hello"; } ]; }"#,
        );
        assert!(spec.function);
        assert_eq!(spec.computed.len(), 1);
        assert_eq!(spec.computed[0].expr, "(builtins.elemAt description.steps 0).succeed");
        assert_eq!(
            spec.steps[0].action,
            Action::Succeed {
                command: crate::spec::computed::placeholder(0),
                expect: Expect::default(),
                capture: None
            }
        );
        // Structure stays static: a computed node name or step list is refused.
        assert_eq!(
            codes(r#"{ nodes, ... }: { nodes.m = {}; steps = [ { succeed = "x"; node = nodes.x; } ]; }"#),
            ["not_static"]
        );
        assert_eq!(codes("{ pkgs, ... }: { nodes.m = {}; steps = pkgs.steps; }"), ["not_static"]);
    }

    #[test]
    fn numbers_may_be_computed() {
        use crate::spec::Num;
        use crate::spec::computed::ComputedType;
        let spec = parse_ok(
            r#"{ nodes, ... }:
            let cfg = nodes.m.services.web; port = 8080; in {
              nodes.m = {};
              steps = [
                { waitForOpenPort = cfg.port; timeout = cfg.timeout; }
                { waitForClosedPort = port; }
                { succeed = "x"; expect.exitCode = cfg.code; }
                { execute = "x"; expect.exitCode = 0; }
                { http.url = "http://m"; http.status = cfg.status; }
                { sleep = cfg.pause; }
                { dumpTtyContents = cfg.tty; }
              ];
            }"#,
        );
        let types: Vec<ComputedType> = spec.computed.iter().map(|c| c.ty).collect();
        assert_eq!(
            types,
            [
                ComputedType::Timeout,
                ComputedType::Int { min: 1, max: 65535 },
                ComputedType::Int { min: 0, max: 255 },
                ComputedType::Int { min: 100, max: 599 },
                ComputedType::Seconds,
                ComputedType::Int { min: 1, max: 63 },
            ]
        );
        assert_eq!(spec.computed[0].expr, "(builtins.elemAt description.steps 0).timeout");
        assert_eq!(spec.computed[0].what, "the `timeout` of `waitForOpenPort`");
        assert_eq!(spec.steps[0].timeout, Some(Num::Computed(0)));
        assert_eq!(spec.steps[0].action, Action::WaitForOpenPort { port: Num::Computed(1), addr: None });
        // A `let`-bound literal folds, and is range-checked statically.
        assert_eq!(spec.steps[1].action, Action::WaitForClosedPort { port: Num::Lit(8080), addr: None });
        assert!(matches!(&spec.steps[2].action,
            Action::Succeed { expect, .. } if expect.exit_code == Some(Num::Computed(2))));
        assert!(matches!(&spec.steps[4].action, Action::Http { status: Num::Computed(3), .. }));
        assert_eq!(spec.steps[5].action, Action::Sleep { seconds: Num::Computed(4) });
        assert_eq!(spec.steps[6].action, Action::DumpTtyContents { tty: Num::Computed(5) });
        // Literals keep their static range checks; a wrong literal type is
        // still `wrong_type`.
        for (step, code) in [
            ("{ waitForOpenPort = 0; }", "port_out_of_range"),
            ("{ succeed = \"x\"; timeout = -1; }", "invalid_timeout"),
            ("{ succeed = \"x\"; timeout = 0; }", "invalid_timeout"),
            ("{ succeed = \"x\"; timeout = 1.0e400; }", "invalid_timeout"),
            ("{ succeed = \"x\"; expect.exitCode = 256; }", "exit_code_out_of_range"),
            ("{ http.url = \"u\"; http.status = 99; }", "status_out_of_range"),
            ("{ sleep = -1; }", "invalid_sleep"),
            ("{ dumpTtyContents = 64; }", "invalid_tty"),
            ("{ waitForOpenPort = \"80\"; }", "wrong_type"),
        ] {
            let text = format!("{{ pkgs, ... }}: {{ nodes.m = {{}}; steps = [ {step} ]; }}");
            assert_eq!(codes(&text), [code], "{step}");
        }
        // Outside steps, numbers shape the test: still static.
        assert_eq!(
            codes("{ pkgs, ... }: { nodes.m = {}; timeout = pkgs.t; steps = [ { sleep = 1; } ]; }"),
            ["not_static"]
        );
    }

    #[test]
    fn captures_are_read_after_they_are_captured() {
        let text = |first: &str| {
            format!(
                r#"{{ pkgs, ... }}: {{ nodes.m = {{}}; steps = [ {first} {{ succeed = "cat t"; capture = "T"; }} {{ succeed = "echo $T"; }} ]; }}"#
            )
        };
        assert_eq!(codes(&text(r#"{ succeed = "echo $T"; }"#)), ["capture_not_defined"]);
        assert_eq!(codes(&text(r#"{ waitUntilFails = "[ -z \"\${T}\" ]"; }"#)), ["capture_not_defined"]);
        // Not captures: the environment, the command's own variables,
        // single-quoted or escaped text, commands Nix computes.
        for fine in [
            r#"{ succeed = "echo $HOME $PATH"; }"#,
            r#"{ succeed = "T=1; echo $T"; }"#,
            r#"{ succeed = "echo '$T' \\$T"; }"#,
            r#"{ succeed = "${pkgs.x} $T"; }"#,
        ] {
            assert!(codes(&text(fine)).is_empty(), "{fine}");
        }
    }

    #[test]
    fn syntax_errors_are_reported_once() {
        assert_eq!(codes("{ nodes.m = {} steps = [ ]; }"), ["nix_syntax"]);
        assert_eq!(codes(""), ["nix_syntax"]);
    }

    #[test]
    fn json_adapter() {
        let j = serde_json::json!({
            "name": "j", "nodes": { "m": null },
            "steps": [ { "succeed": "x", "expect": { "exitCode": 1 } }, { "sleep": 0.25 } ]
        });
        let (spec, diags) = from_json(FileId(3), Path::new("tests/vm/j.nix"), &j);
        assert!(diags.is_empty(), "{diags:?}");
        let spec = spec.expect("spec");
        assert_eq!(spec.name, "j");
        assert_eq!(spec.steps[0].node.as_deref(), Some("m"));
        assert_eq!(spec.steps[1].action, Action::Sleep { seconds: 0.25.into() });
    }

    /// Line of each top-level step (and of subtest steps) after converting
    /// `json` with the source `text`.
    fn json_step_lines(text: &str, json: &serde_json::Value) -> Vec<Option<usize>> {
        let mut sources = crate::diagnostic::Sources::default();
        let file = sources.add("tests/vm/j.nix", text);
        let (spec, diags) = from_json_with_source(file, Path::new("tests/vm/j.nix"), text, json);
        assert!(diags.is_empty(), "{diags:?}");
        let mut lines = Vec::new();
        for step in &spec.expect("spec").steps {
            lines.push(step.span.map(|s| sources.line_col(s.file, s.start).0));
            if let Action::Subtest { steps, .. } = &step.action {
                lines.extend(steps.iter().map(|s| s.span.map(|s| sources.line_col(s.file, s.start).0)));
            }
        }
        lines
    }

    #[test]
    fn json_steps_take_positions_from_the_source() {
        let json = serde_json::json!({
            "nodes": { "m": null },
            "steps": [ { "waitForOpenPort": 80 }, { "subtest": "s", "steps": [ { "sleep": 1 } ] } ]
        });
        // Computed values inside a literal list: each step keeps its own line.
        let text = "let p = 80; in {\n  nodes.m = { };\n  steps = [\n    { waitForOpenPort = p; }\n    {\n      subtest = \"s\";\n      steps = [ { sleep = 1; } ];\n    }\n  ];\n}\n";
        assert_eq!(json_step_lines(text, &json), [Some(4), Some(5), Some(7)]);
        // A computed list: every step is at the `steps` value.
        let text = "let xs = [ ]; in {\n  nodes.m = { };\n\n  steps = xs ++ [ ];\n}\n";
        assert_eq!(json_step_lines(text, &json), [Some(4), Some(4), Some(4)]);
        // A list of a different length: same.
        let text = "{\n  nodes.m = { };\n  steps =\n    [ (f 1) ] ++ g;\n}\n";
        assert_eq!(json_step_lines(text, &json), [Some(4), Some(4), Some(4)]);
        // Nothing static to go by: no positions rather than line 1.
        for text in ["import ./x.nix", "{ nodes.m = { }; } // import ./steps.nix", "{ broken"] {
            assert_eq!(json_step_lines(text, &json), [None, None, None], "{text}");
        }
        let (spec, _) = from_json(FileId(0), Path::new("tests/vm/j.nix"), &json);
        assert!(spec.expect("spec").steps.iter().all(|s| s.span.is_none()));
    }

    #[test]
    fn json_mistakes_point_at_the_given_span() {
        let j = serde_json::json!({ "nodes": { "a": null, "b": null }, "steps": [ { "succed": "x" }, { "fail": "y" } ] });
        let span = Span { file: FileId(2), start: 0, end: 40 };
        let (spec, diags) = from_json_spanned(Path::new("tests/vm/j.nix"), &j, span);
        let codes: Vec<_> = diags.iter().map(|d| d.code).collect();
        assert_eq!(codes, ["unknown_step_key", "missing_node"]);
        assert!(diags.iter().all(|d| d.span == Some(span)));
        assert_eq!(spec.map(|s| s.steps.len()), Some(1));
    }
}

mod deep {
    use super::super::*;

    /// Deep nesting must end in diagnostics, not a stack overflow.
    #[test]
    fn deeply_nested_input_does_not_overflow() {
        for text in [
            "[".repeat(100_000),
            format!("{{ nodes.m = {{}}; steps = {}1{}; }}", "[".repeat(5000), "]".repeat(5000)),
            format!(
                "{{ nodes.m = {{}}; steps = [ {{ sleep = {}1{}; }} ]; }}",
                "(".repeat(5000),
                ")".repeat(5000)
            ),
            "{ a = ".repeat(20_000),
            format!("{{ nodes.m = {{}}; steps = [ {{ sleep = {}1; }} ]; }}", "-".repeat(5000)),
        ] {
            let (_, diags) = parse(FileId(0), Path::new("d.nix"), &text);
            assert!(!diags.is_empty());
        }
    }
}

mod lists {
    use super::super::*;
    use crate::spec::Expect;

    fn parse_ok(text: &str) -> TestSpec {
        let (spec, diags) = parse(FileId(0), Path::new("tests/vm/t.nix"), text);
        assert!(diags.is_empty(), "{diags:#?}");
        spec.expect("spec")
    }

    #[test]
    fn command_lists_are_one_step_per_command() {
        let spec = parse_ok(
            r#"{ nodes.m = {}; steps = [ { succeed = [ "a" "b" ]; timeout = 5; } { fail = [ "c" ]; } ]; }"#,
        );
        let commands: Vec<_> = spec.steps.iter().map(|s| (s.action.key(), s.timeout)).collect();
        assert_eq!(commands, [("succeed", Some(5.0.into())), ("succeed", Some(5.0.into())), ("fail", None)]);
        let (_, diags) = parse(
            FileId(0),
            Path::new("t.nix"),
            r#"{ nodes.m = {}; steps = [ { succeed = [ "a" ]; expect.contains = "x"; } { fail = [ ]; } ]; }"#,
        );
        let codes: Vec<_> = diags.iter().map(|d| d.code).collect();
        assert_eq!(codes, ["misplaced_step_key", "empty_command"]);
    }

    #[test]
    fn expectation_lists_and_json() {
        let spec = parse_ok(
            r#"let ks = [ "a" "b" ]; in { nodes.m = {}; steps = [ { succeed = "x"; expect = {
                contains = map (k: "k=${k}") ks; notContains = "err"; json = { n = 1; l = [ true null 1.5 ]; }; }; } ]; }"#,
        );
        let Action::Succeed { expect, .. } = &spec.steps[0].action else { panic!() };
        assert_eq!(
            *expect,
            Expect {
                contains: vec!["k=a".into(), "k=b".into()],
                not_contains: vec!["err".into()],
                json: Some(serde_json::json!({ "n": 1, "l": [true, null, 1.5] })),
                ..Expect::default()
            }
        );
        // One needle is a string in the plan, several a list.
        let plan = serde_json::to_value(expect).unwrap();
        assert_eq!(plan["contains"], serde_json::json!(["k=a", "k=b"]));
        assert_eq!(plan["notContains"], "err");
        let back: Expect = serde_json::from_value(plan).unwrap();
        assert_eq!(&back, expect);
    }
}

#[test]
fn python_step_needs_the_python_backend() {
    use super::*;
    use crate::diagnostic::FileId;
    use std::path::Path;
    let text = r#"{ nodes.m = {}; steps = [ { python = "m.succeed('true')"; } ]; }"#;
    let (_, diags) = parse(FileId(0), Path::new("t.nix"), text);
    assert_eq!(diags.iter().map(|d| d.code).collect::<Vec<_>>(), ["python_needs_python_backend"]);
    let text = r#"{ backend = "python"; nodes.m = {}; steps = [ { python = "m.succeed('true')"; } ]; }"#;
    let (spec, diags) = parse(FileId(0), Path::new("t.nix"), text);
    assert!(diags.is_empty(), "{diags:?}");
    assert_eq!(
        spec.unwrap().steps[0].action,
        crate::spec::Action::Python { code: "m.succeed('true')".into() }
    );
}

mod many {
    use super::super::*;

    /// Past 200 files `parse_many` spreads them over worker threads; the
    /// results come back in input order, equal to parsing one by one.
    #[test]
    fn parse_many_keeps_the_order_across_workers() {
        let texts: Vec<String> = (0..450)
            .map(|i| match i % 3 {
                0 => format!("{{ nodes.m = {{ }}; steps = [ {{ sleep = {i}; }} ]; }}"),
                1 => format!("{{ nodes.m = {{ }}; steps = [ {{ succeed = \"echo {i}\"; }} ]; }}"),
                _ => format!("{{ nodes.m = {{ }}; steps = [ {{ sleep = \"{i}\"; }} ]; }}"),
            })
            .collect();
        let paths: Vec<std::path::PathBuf> = (0..450).map(|i| format!("tests/vm/t{i}.nix").into()).collect();
        let inputs: Vec<ParseInput<'_>> = texts
            .iter()
            .zip(&paths)
            .enumerate()
            .map(|(i, (t, p))| (FileId(i), p.as_path(), t.as_str()))
            .collect();
        let many = parse_many(&inputs);
        let one: Vec<_> = inputs.iter().map(|&(f, p, t)| parse(f, p, t)).collect();
        assert_eq!(many.len(), 450);
        assert!(many == one, "parse_many differs from parsing one by one");
        assert!(many[2].1.iter().any(|d| d.code == "wrong_type"), "{:?}", many[2].1);
    }
}
