//! Python functions the script defines when its steps need them, written
//! at block level 0.

use super::Names;
use super::out::Out;
use crate::guest::captures;

/// The Python side of `expect.json`, the same rule as the driver's
/// `json_contains` (booleans are not numbers, `1 == 1.0`).
pub fn json_helpers(out: &mut Out, n: &Names) {
    let (contains, expect_json, json) = (&n.json_contains, &n.expect_json, &n.json);
    out.line(format_args!(
        "def {contains}(want: object, got: object) -> bool:
    if isinstance(want, dict):
        return isinstance(got, dict) and all(k in got and {contains}(v, got[k]) for k, v in want.items())
    if isinstance(want, list):
        return isinstance(got, list) and len(want) == len(got) and all({contains}(a, b) for a, b in zip(want, got))
    if isinstance(want, bool) or isinstance(got, bool):
        return type(want) is type(got) and want == got
    if isinstance(want, (int, float)) and isinstance(got, (int, float)):
        return want == got
    return type(want) is type(got) and want == got

def {expect_json}(want: object, text: str) -> bool:
    try:
        got = {json}.loads(text)
    except ValueError:
        return False
    return {contains}(want, got)"
    ));
}

/// The Python side of a capture: the same value and file as nixvm-driver's
/// `write_capture` (output without trailing newlines, no NUL, written whole
/// then renamed into `<shared_dir>/.nixvm-captures/`).
pub fn capture_helper(out: &mut Out, n: &Names) {
    let (capture, os) = (&n.capture, &n.os);
    let dir = captures::CAPTURE_DIR;
    out.line(format_args!(
        "def {capture}(shared_dir: object, name: str, output: str) -> None:
    value = output.rstrip(\"\\n\")
    if \"\\0\" in value:
        raise Exception(\"capture %s: the output contains a NUL byte, which an environment variable cannot hold\" % name)
    directory = {os}.path.join(str(shared_dir), \"{dir}\")
    {os}.makedirs(directory, exist_ok=True)
    partial = {os}.path.join(directory, \".\" + name + \".partial\")
    with open(partial, \"wb\") as f:
        f.write(value.encode())
    {os}.replace(partial, {os}.path.join(directory, name))"
    ));
}
