//! Captures in the Python backend: the generated testScript, evaluated by
//! Nix (every command and expectation a computed string, so the values pass
//! through `builtins.toJSON`), runs against a fake Machine that executes the
//! commands with the local bash (`/tmp/shared` mapped to its `shared_dir`,
//! as the fake guest does). Captured values reach later commands byte for
//! byte, nothing in them runs, and the commands are exactly what
//! nixvm-driver sends ([`with_captures`]).

use std::process::Command;

use base64::Engine;
use nixvm_gen::codegen::escape;
use nixvm_gen::guest::captures::with_captures;
use nixvm_gen::guest::shell_quote;

use super::{TINY_STAND_IN, copy_case, generate, nix_eval_path, string_batch};
use crate::util;

/// A stock-like Machine that runs commands for real (`execute`,
/// `succeed`, `fail`, `wait_until_succeeds`) and records them.
const EXECUTING_FAKE: &str = r#"
import json, subprocess, sys
SHARED = sys.argv[1]
calls = []
class Machine:
    shared_dir = SHARED
    def execute(self, command, check_return=True, check_output=True, timeout=900):
        calls.append(command)
        p = subprocess.run(["bash", "-c", "set -euo pipefail; " + command.replace("/tmp/shared", SHARED)],
                           stdout=subprocess.PIPE)
        return p.returncode, p.stdout.decode(errors="replace")
    def succeed(self, *commands, timeout=None):
        out = ""
        for c in commands:
            status, o = self.execute(c)
            if status != 0:
                raise Exception("command `%s` failed (exit code %d)" % (c, status))
            out += o
        return out
    def fail(self, *commands, timeout=None):
        for c in commands:
            status, _ = self.execute(c)
            if status == 0:
                raise Exception("command `%s` unexpectedly succeeded" % c)
        return ""
    def wait_until_succeeds(self, command, timeout=900):
        return self.succeed(command)
def start_all():
    pass
def retry(fn, timeout=900):
    if not fn(True):
        raise Exception("retry: the condition does not hold")
machine = Machine()
exec(sys.stdin.read())
sys.stdout.write(json.dumps(calls))
"#;

#[test]
fn captured_values_reach_later_python_commands_exactly_and_never_run() {
    if !util::require("nix-instantiate", "evaluates the generated testScript")
        || !util::require("python3", "runs the generated testScript")
        || !util::require("bash", "runs the commands of the generated testScript")
    {
        return;
    }
    let shared = util::tempdir();
    let marker = shared.path().join("pwned");
    let mut values = string_batch();
    values.extend([
        format!("$(touch {})", marker.display()),
        format!("`touch {}`", marker.display()),
        format!("'; touch {} #", marker.display()),
        "\nleading newline".to_string(),
        String::new(),
    ]);
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let mut steps = String::new();
    let mut expected_calls = Vec::new();
    let mut names = Vec::new();
    for (i, value) in values.iter().enumerate() {
        let name = format!("V{i}");
        let produce = format!("printf '%s\\n' {}", shell_quote(value));
        let check = format!("printf '%s' \"${name}\" | base64 -w 0");
        // The three capturing step kinds in turn.
        let kind = ["succeed", "execute", "waitUntilSucceeds"][i % 3];
        steps.push_str(&format!(
            "    {{ {kind} = id {}; capture = \"{name}\"; }}\n    {{ succeed = id {}; expect.equals = id {}; }}\n",
            escape::nix_string(&produce),
            escape::nix_string(&check),
            escape::nix_string(&b64(value.trim_end_matches('\n'))),
        ));
        expected_calls.push(with_captures(&names, &produce));
        names.push(name);
        expected_calls.push(with_captures(&names, &check));
    }
    let dir = copy_case("single-node-rust");
    std::fs::remove_file(dir.path().join("tests/vm/health.nix")).unwrap();
    std::fs::write(
        dir.path().join("tests/vm/nasty.nix"),
        format!(
            "{{ pkgs, ... }}:\nlet\n  id = x: builtins.seq pkgs x;\nin\n{{\n  backend = \"python\";\n  systems = [ \"x86_64-linux\" ];\n  nodes.machine = {{ }};\n  steps = [\n{steps}  ];\n}}\n"
        ),
    )
    .unwrap();
    let text = generate(dir.path());
    assert!(text.contains("builtins.toJSON (nixvmValue"), "the commands are computed:\n{text}");
    std::fs::write(dir.path().join("stand-in.nix"), TINY_STAND_IN).unwrap();
    let script = nix_eval_path(&dir.path().join("stand-in.nix"));
    let script = script.as_str().expect("testScript is a string").to_string();
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(EXECUTING_FAKE)
        .arg(shared.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs");
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), script.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the generated script failed:\n{}\n--- script\n{script}",
        String::from_utf8_lossy(&out.stderr)
    );
    let calls: Vec<String> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(calls.len(), expected_calls.len());
    for (got, want) in calls.iter().zip(&expected_calls) {
        assert_eq!(got, want, "the Python backend sends what nixvm-driver sends");
    }
    assert!(!marker.exists(), "a captured value was executed");
    let stored = std::fs::read_to_string(shared.path().join(".nixvm-captures/V1")).unwrap();
    assert_eq!(stored, values[1].trim_end_matches('\n'));
}
