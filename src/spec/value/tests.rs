//! Unit tests of lowering.

use super::*;

fn lower(text: &str) -> (Value, Vec<Diagnostic>) {
    let parsed = rnix::Root::parse(text);
    assert!(parsed.errors().is_empty(), "{:?}", parsed.errors());
    let expr = parsed.tree().expr().expect("expression");
    let mut diags = Vec::new();
    (lower_root(FileId(0), &expr, &mut diags), diags)
}

fn get<'a>(v: &'a Value, key: &str) -> &'a Value {
    &v.attrs().expect("attrs").iter().find(|e| e.key == key).expect(key).value
}

#[test]
fn literals() {
    let (v, d) =
        lower(r#"{ a = 1; b = -2; c = 1.5; d = -0.5; e = true; f = null; g = "x"; h = [ 1 "y" ]; }"#);
    assert!(d.is_empty());
    assert_eq!(get(&v, "a").kind, Kind::Int(1));
    assert_eq!(get(&v, "b").kind, Kind::Int(-2));
    assert_eq!(get(&v, "c").kind, Kind::Float(1.5));
    assert_eq!(get(&v, "d").kind, Kind::Float(-0.5));
    assert_eq!(get(&v, "e").kind, Kind::Bool(true));
    assert_eq!(get(&v, "f").kind, Kind::Null);
    assert_eq!(get(&v, "g").kind, Kind::Str("x".into()));
    assert!(matches!(&get(&v, "h").kind, Kind::List(items) if items.len() == 2));
}

#[test]
fn dotted_paths_merge() {
    let (v, d) = lower(r#"{ a.b = 1; a.c = 2; x = { y = 1; }; x = { z = 2; }; "q r" = 3; }"#);
    assert!(d.is_empty(), "{d:?}");
    let a = get(&v, "a");
    assert_eq!(get(a, "b").kind, Kind::Int(1));
    assert_eq!(get(a, "c").kind, Kind::Int(2));
    assert_eq!(get(get(&v, "x"), "z").kind, Kind::Int(2));
    assert_eq!(get(&v, "q r").kind, Kind::Int(3));
}

#[test]
fn duplicates_are_reported() {
    for text in ["{ a = 1; a = 2; }", "{ a = 1; a.b = 2; }", "{ a.b = 1; a = { b = 2; }; }"] {
        let (_, d) = lower(text);
        assert_eq!(d.len(), 1, "{text}: {d:?}");
        assert_eq!(d[0].code, "duplicate_key");
    }
}

#[test]
fn non_data_is_opaque_with_exact_span() {
    let text = r#"{ a = "x${y}z"; b = let q = f; in q; c = f 1; d = x // y; e = ./p; }"#;
    let (v, _) = lower(text);
    let a = get(&v, "a");
    assert!(matches!(&a.kind, Kind::Opaque { why } if why.contains("interpolation")));
    assert_eq!(&text[a.span.start as usize..a.span.end as usize], "${y}");
    for key in ["b", "c", "d", "e"] {
        assert!(matches!(get(&v, key).kind, Kind::Opaque { .. }), "{key}");
    }
}

#[test]
fn let_bound_functions_fold_like_python_helpers() {
    // A testScript's `def login(tty, user):` helper, written as a `let` function.
    let text = r#"let
      prefix = "tty";
      wait = n: { waitForUnit = "getty@${prefix}${n}.service"; };
      login = n: user: [ (wait n) { sendChars = "${user}\n"; } ];
      pair = { a, b ? "y" }: a + b;
    in {
      a = login "2" "alice" ++ login "3" "bob";
      b = map wait [ "4" "5" ];
      c = builtins.concatMap (login "6") [ "carol" ];
      d = pair { a = "x"; };
      e = let prefix = "shadowed"; in wait "7";
      f = login "8";
      g = wait unknown;
      h = map (node: { inherit node; waitForUnit = "x"; }) [ "a" "b" ];
    }"#;
    let (v, d) = lower(text);
    assert!(d.is_empty(), "{d:?}");
    let Kind::List(a) = &get(&v, "a").kind else { panic!("{:?}", get(&v, "a")) };
    assert_eq!(a.len(), 4);
    assert_eq!(get(&a[0], "waitForUnit").kind, Kind::Str("getty@tty2.service".into()));
    assert_eq!(get(&a[3], "sendChars").kind, Kind::Str("bob\n".into()));
    let Kind::List(b) = &get(&v, "b").kind else { panic!() };
    assert_eq!(get(&b[1], "waitForUnit").kind, Kind::Str("getty@tty5.service".into()));
    let Kind::List(c) = &get(&v, "c").kind else { panic!("{:?}", get(&v, "c")) };
    assert_eq!(get(&c[0], "waitForUnit").kind, Kind::Str("getty@tty6.service".into()));
    assert_eq!(get(&c[1], "sendChars").kind, Kind::Str("carol\n".into()));
    let Kind::List(h) = &get(&v, "h").kind else { panic!("{:?}", get(&v, "h")) };
    assert_eq!(get(&h[1], "node").kind, Kind::Str("b".into()));
    assert_eq!(get(&v, "d").kind, Kind::Str("xy".into()));
    // Free names resolve where the function was defined, not where it is called.
    assert_eq!(get(get(&v, "e"), "waitForUnit").kind, Kind::Str("getty@tty7.service".into()));
    // Too few arguments: a function, which validation reports as a wrong type.
    assert_eq!(get(&v, "f").kind, Kind::Lambda);
    // An unknown argument leaves the string it reaches opaque, the structure known.
    assert!(matches!(get(get(&v, "g"), "waitForUnit").kind, Kind::Opaque { .. }));
}

#[test]
fn conditions_on_known_values_fold() {
    let text = r#"let
      step = ok: cmd: if ok then { succeed = cmd; } else { fail = cmd; };
      ip = arg: if arg == "-6" then "fe00::1" else "192.168.1.";
    in {
      a = [ (step true "x") (step false "y") ];
      b = map ip [ "-6" "-4" ];
      c = if 1 != 2 then "yes" else "no";
      d = if unknown then 1 else 2;
      e = if [ 1 ] == [ 1 ] then 1 else 2;
    }"#;
    let (v, d) = lower(text);
    assert!(d.is_empty(), "{d:?}");
    let Kind::List(a) = &get(&v, "a").kind else { panic!("{:?}", get(&v, "a")) };
    assert_eq!(get(&a[0], "succeed").kind, Kind::Str("x".into()));
    assert_eq!(get(&a[1], "fail").kind, Kind::Str("y".into()));
    let Kind::List(b) = &get(&v, "b").kind else { panic!() };
    assert_eq!(b[0].kind, Kind::Str("fe00::1".into()));
    assert_eq!(b[1].kind, Kind::Str("192.168.1.".into()));
    assert_eq!(get(&v, "c").kind, Kind::Str("yes".into()));
    assert!(matches!(get(&v, "d").kind, Kind::Opaque { .. }));
    // Only scalars are compared statically.
    assert!(matches!(get(&v, "e").kind, Kind::Opaque { .. }));
}

#[test]
fn recursive_let_function_is_bounded() {
    let (v, _) = lower("let f = x: f x; in { a = f 1; }");
    assert!(matches!(get(&v, "a").kind, Kind::Opaque { .. }));
}

#[test]
fn plain_data_folds() {
    let text = r#"let
      port = 3000;
      host = "localhost";
      url = "http://${host}:${toString port}/";
      cfg = { user = "alice"; };
      ports = [ 80 443 ];
    in {
      a = url;
      b = map (p: { waitForOpenPort = p; }) ports ++ [ { sleep = 1; } ];
      c = builtins.concatMap (p: [ p p ]) [ 1 2 ];
      d = cfg.user + "!";
      e = ''
        port ${toString port}
          ok
      '';
      f = let q = 1; in q + 1;
      g = map ({ n, m ? "x" }: n + m) [ { n = "a"; } { n = "b"; m = "y"; } ];
    }"#;
    let (v, d) = lower(text);
    assert!(d.is_empty(), "{d:?}");
    assert_eq!(get(&v, "a").kind, Kind::Str("http://localhost:3000/".into()));
    let Kind::List(b) = &get(&v, "b").kind else { panic!("{:?}", get(&v, "b")) };
    assert_eq!(b.len(), 3);
    assert_eq!(get(&b[1], "waitForOpenPort").kind, Kind::Int(443));
    let Kind::List(c) = &get(&v, "c").kind else { panic!() };
    assert_eq!(c.iter().map(|x| x.kind.clone()).collect::<Vec<_>>(), [1, 1, 2, 2].map(Kind::Int));
    assert_eq!(get(&v, "d").kind, Kind::Str("alice!".into()));
    assert_eq!(get(&v, "e").kind, Kind::Str("port 3000\n  ok\n".into()));
    assert_eq!(get(&v, "f").kind, Kind::Int(2));
    let Kind::List(g) = &get(&v, "g").kind else { panic!() };
    assert_eq!(g[0].kind, Kind::Str("ax".into()));
    assert_eq!(g[1].kind, Kind::Str("by".into()));
}

#[test]
fn unknown_values_stay_opaque_at_their_use() {
    let text = r#"{ pkgs, nodes, ... }: let map = x: x; in {
      a = "${pkgs.hello}/bin/hello";
      b = map (x: x) [ 1 ];
      c = let r = r; in r;
    }"#;
    let (v, _) = lower(text);
    for key in ["a", "b", "c"] {
        assert!(matches!(get(&v, key).kind, Kind::Opaque { .. }), "{key}: {:?}", get(&v, key));
    }
}

#[test]
fn folding_is_bounded() {
    // Each name doubles the list: 2^40 items unless bounded.
    let mut text = String::from("let a0 = [ 1 1 ];");
    for i in 1..40 {
        text.push_str(&format!(" a{i} = a{} ++ a{};", i - 1, i - 1));
    }
    text.push_str(" in { x = a39; }");
    let start = std::time::Instant::now();
    let (v, _) = lower(&text);
    assert!(matches!(get(&v, "x").kind, Kind::Opaque { .. }));
    assert!(start.elapsed() < std::time::Duration::from_secs(20));
}

#[test]
fn computed_values_in_steps_know_their_place() {
    let text = r#"{ pkgs, ... }: {
      name = "${pkgs.x}";
      steps = [ { succeed = "${pkgs.hello}/bin/hello"; expect.contains = [ "a" pkgs.b ]; } ];
    }"#;
    let parsed = rnix::Root::parse(text);
    let mut diags = Vec::new();
    let (v, function) = lower_description(FileId(0), &parsed.tree().expr().unwrap(), &mut diags);
    assert!(function);
    assert!(matches!(get(&v, "name").kind, Kind::Opaque { .. }), "only steps are computed");
    let Kind::List(steps) = &get(&v, "steps").kind else { panic!() };
    assert!(matches!(&get(&steps[0], "succeed").kind,
        Kind::Computed { expr, .. } if expr == "(builtins.elemAt description.steps 0).succeed"));
    let Kind::List(needles) = &get(get(&steps[0], "expect"), "contains").kind else { panic!() };
    assert!(matches!(&needles[1].kind,
        Kind::Computed { expr, .. } if expr == "(builtins.elemAt (builtins.elemAt description.steps 0).expect.contains 1)"));
    assert_eq!(crate::spec::strings::nix_attr_name("a-b"), "a-b");
    assert_eq!(crate::spec::strings::nix_attr_name("a b"), "\"a b\"");
    assert_eq!(crate::spec::strings::nix_attr_name("in"), "\"in\"");
    assert_eq!(crate::spec::strings::nix_attr_name("${x}"), "\"\\${x}\"");
}

#[test]
fn nodes_are_not_lowered() {
    let (v, d) = lower(
        r#"{ nodes.a = { pkgs, ... }: { x = pkgs.y; }; nodes = { b = import ./b.nix; }; nodes.c.d = 1; }"#,
    );
    assert!(d.is_empty(), "{d:?}");
    let nodes = get(&v, "nodes");
    for n in ["a", "b", "c"] {
        assert_eq!(get(nodes, n).kind, Kind::Module, "{n}");
    }
}

#[test]
fn json_nodes_become_modules() {
    let j = serde_json::json!({ "nodes": { "m": null }, "steps": [ { "sleep": 1.5 } ], "timeout": 3 });
    let v = from_json(&j, Span::default());
    assert_eq!(get(get(&v, "nodes"), "m").kind, Kind::Module);
    assert_eq!(get(&v, "timeout").kind, Kind::Int(3));
}
