#!/usr/bin/env python3
"""A recording fake of the stock NixOS test driver, for `nixvm-gen import`.

It runs a testScript against fake Machines that record every call (node,
method, arguments bound to the stock driver's signatures) and every check
made on a command's output (`"x" in out`, `out == "y"`, `re.search(p, out)`),
and compares the logs of two scripts: the original testScript of an
imported test and the testScript nixvm-gen generates from the new
description.

What is compared, and what is normalised (docs/import.md says why):
- calls, in order, with all arguments; a `timeout` only when the original
  passed one (descriptions have their own default timeouts);
- the first boot of each node as a set, not in order (a description boots
  every node first, as `start_all()` does; the stock driver boots a node
  lazily on its first command). Later boots (`start` after `shutdown`) are
  compared in place;
- `succeed("a", "b")` as `succeed("a")`, `succeed("b")` (the stock driver
  runs them one by one), `sleep(n)` as `succeed("sleep n")` (what the stock
  driver does);
- the checks on one call's output as a set.

Usage:
  fake_machine.py compare NODES ORIGINAL.py GENERATED.py   (NODES: a,b,c)
  fake_machine.py check-import REPORT.json   (from `nixvm-gen import --dry-run --format json`)
Prints JSON; exit 0 when every compared pair is equal, 1 otherwise.
"""

import ast
import contextlib
import io
import json
import os
import re
import shutil
import sys
import tempfile
import time
import unittest

# Parameters of the stock driver's Machine methods, in order, with defaults
# (nixos/lib/test-driver/src/test_driver/machine/__init__.py).
SIGNATURES = {
    "wait_for_unit": [("unit", None), ("user", None), ("timeout", 900)],
    "wait_for_open_port": [("port", None), ("addr", "localhost"), ("timeout", 900)],
    "wait_for_closed_port": [("port", None), ("addr", "localhost"), ("timeout", 900)],
    "wait_for_file": [("filename", None), ("timeout", 900)],
    "wait_for_console_text": [("regex", None), ("timeout", None)],
    "wait_until_succeeds": [("command", None), ("timeout", 900)],
    "wait_until_fails": [("command", None), ("timeout", 900)],
    "execute": [("command", None), ("check_return", True), ("check_output", True), ("timeout", 900)],
    "copy_from_vm": [("source", None), ("target_dir", "")],
    "screenshot": [("filename", None)],
    "start": [("allow_reboot", False)],
    "send_key": [("key", None), ("delay", 0.01), ("log", True)],
    "send_chars": [("chars", None), ("delay", 0.01)],
    "wait_until_tty_matches": [("tty", None), ("regexp", None), ("timeout", 900)],
    "dump_tty_contents": [("tty", None)],
    "get_tty_text": [("tty", None)],
    "wait_for_text": [("regex", None), ("timeout", 900)],
    "wait_for_x": [("timeout", 900)],
    "wait_for_window": [("regexp", None), ("timeout", 900)],
    "require_unit_state": [("unit", None), ("require_state", "active")],
    "copy_from_host": [("source", None), ("target", None)],
    "wait_for_open_unix_socket": [("addr", None), ("is_datagram", False), ("timeout", 900)],
    "forward_port": [("host_port", 8080), ("guest_port", 80)],
    "get_unit_info": [("unit", None), ("user", None)],
}
# Stock methods that are one `execute` of a systemctl command (BaseMachine
# at NixOS/nixpkgs 019697db): recorded as that `execute`, which is what a
# generated script calls when it must pass a timeout or the captures.
SYSTEMCTL_METHODS = {"systemctl": "", "start_job": "start ", "stop_job": "stop "}


def systemctl_command(q, user=None):
    if user is not None:
        q = q.replace("'", "\\'")
        return ("su -l " + user + " --shell /bin/sh -c "
                "$'XDG_RUNTIME_DIR=/run/user/`id -u` systemctl --user " + q + "'")
    return "systemctl " + q
# Methods that do not boot a stopped machine.
NO_BOOT = {"shutdown", "crash", "block", "unblock", "wait_for_console_text", "screenshot",
           "send_monitor_command", "is_up", "send_key", "send_chars", "wait_for_text", "get_screen_text",
           "get_screen_text_variants"}
# Methods whose `tty` the stock driver only formats into a command (`/dev/tty{tty}`).
TTY_METHODS = {"wait_until_tty_matches", "dump_tty_contents", "get_tty_text"}
OUTPUT_METHODS = {"succeed", "fail", "wait_until_succeeds", "wait_until_fails"}
PORT_METHODS = {"wait_for_open_port", "wait_for_closed_port"}


# What `nixvm-gen import` requires of a captured output (src/import/python.rs
# PLAIN_CAPTURE): only then is `$NAME` in a command the same as the original's
# pasted, stripped text, so only then does this fake substitute it.
PLAIN_CAPTURE = r"^[A-Za-z0-9._/:@%+=,~-]*\n*$"
# The capture preamble nixvm-gen puts before every later command
# (src/guest/captures.rs).
PREAMBLE = re.compile(r"for __c in ([A-Za-z0-9_ ]+); do IFS= read -r -d '' \$__c "
                      r"</tmp/shared/\.nixvm-captures/\$__c \|\| :; export \$__c; done; unset __c; ", re.S)
OUTPUT_REF = re.compile(r"^<output of call (\d+) trimmed>$")


class Recorder:
    def __init__(self):
        self.events = []      # ["call", node, method, args, timeout] | ["boot", node] | ["subtest", ...] | ["sleep", n]
        self.checks = {}      # call index -> list of checks
        self.calls = 0

    def call(self, node, method, args, timeout):
        self.events.append(["call", node, method, args, timeout])
        self.calls += 1
        return self.calls - 1

    def check(self, ref, *what):
        self.checks.setdefault(ref, []).append(list(what))

    def guarded(self, ref):
        return ["matches", "", PLAIN_CAPTURE, 0] in self.checks.get(ref, [])

    def command(self, command, shared_dir):
        """The command as the guest's shell sees it: a capture preamble
        removed and each `$NAME`/`${NAME}` it exports replaced by the
        captured text, when that capture was checked to be plain."""
        if not isinstance(command, str):
            return command
        m = PREAMBLE.match(command)
        if not m:
            return command
        command = command[m.end():]
        for name in m.group(1).split():
            try:
                with open(os.path.join(shared_dir, ".nixvm-captures", name)) as f:
                    value = f.read()
            except OSError:
                continue
            ref = OUTPUT_REF.match(value)
            if not ref or not self.guarded(int(ref.group(1))):
                continue
            command = re.sub(r"\$(\{" + name + r"\}|" + name + r"(?![A-Za-z0-9_]))", lambda _: value, command)
        return command


class _NotIn(ast.NodeTransformer):
    """`a not in b` → `__nixvm_not_in__(a, b)`: `Out.__contains__` cannot
    tell `in` from `not in`, so the negated check is recorded by a call."""

    def visit_Compare(self, node):
        self.generic_visit(node)
        if len(node.ops) == 1 and isinstance(node.ops[0], ast.NotIn):
            return ast.copy_location(ast.Call(func=ast.Name("__nixvm_not_in__", ast.Load()),
                                              args=[node.left, node.comparators[0]], keywords=[]), node)
        return node


def not_in_as_call(script):
    try:
        tree = ast.parse(script, "<testScript>")
    except SyntaxError:
        return script
    return ast.fix_missing_locations(_NotIn().visit(tree))


class Out(str):
    """The output of a command: every check on it is recorded and holds.

    Its text names the call it came from (`<output of call 3>`), so a
    command built from an output (a `python` step's `f"cat {path}"`, a
    capture) records which output it used: using another call's output is a
    different argument."""

    def __new__(cls, rec, ref, transform=""):
        obj = super().__new__(cls, f"<output of call {ref}{transform}>")
        obj._rec, obj._ref, obj._transform = rec, ref, transform
        return obj

    def __contains__(self, needle):
        if needle == "\0":
            # The capture helper's NUL test (no original makes it).
            return False
        self._rec.check(self._ref, "contains", self._transform, needle)
        return True

    def __eq__(self, other):
        self._rec.check(self._ref, "equals", self._transform, other)
        return True

    def __ne__(self, other):
        self._rec.check(self._ref, "not-equals", self._transform, other)
        return False

    __hash__ = str.__hash__

    # `.strip()`, `.rstrip()` and a capture's `.rstrip("\n")` are one text
    # here: they differ only on outputs a capture's plain check refuses.
    def strip(self, chars=None):
        if chars is None and not self._transform:
            return Out(self._rec, self._ref, " trimmed")
        return Out(self._rec, self._ref, self._transform + f".strip({chars!r})")

    def rstrip(self, chars=None):
        if chars in (None, "\n") and not self._transform:
            return Out(self._rec, self._ref, " trimmed")
        return Out(self._rec, self._ref, self._transform + f".rstrip({chars!r})")

    def lstrip(self, chars=None):
        return Out(self._rec, self._ref, self._transform + f".lstrip({chars!r})")


class Machine:
    def __init__(self, name, rec, shared_dir):
        self.name = name
        self._rec = rec
        self._up = False
        self.shared_dir = shared_dir

    def _boot(self, method):
        if not self._up and method not in NO_BOOT:
            self._up = True
            self._rec.events.append(["boot", self.name])

    def _bind(self, method, args, kwargs):
        params = SIGNATURES.get(method)
        if params is None:
            return [list(args), sorted(kwargs.items())], kwargs.get("timeout")
        bound = {}
        for (name, _), value in zip(params, args):
            bound[name] = value
        for k, v in kwargs.items():
            bound[k] = v
        timeout = bound.pop("timeout", None)
        if method in PORT_METHODS and "port" in bound:
            # The stock driver only formats the port into `nc -z {addr} {port}`:
            # 15672 and "15672" are the same probe.
            bound["port"] = str(bound["port"])
        if method in TTY_METHODS and "tty" in bound:
            bound["tty"] = str(bound["tty"])
        full = [bound.get(name, default) for name, default in params if name != "timeout"]
        return full, timeout

    def start(self, allow_reboot=False):
        if not self._up:
            self._up = True
            self._rec.events.append(["boot", self.name])

    def shutdown(self):
        if self._up:
            self._up = False
            self._rec.call(self.name, "shutdown", [], None)

    def crash(self):
        if self._up:
            self._up = False
            self._rec.call(self.name, "crash", [], None)

    def sleep(self, secs):
        # The stock driver sleeps in the guest time: succeed(f"sleep {secs}").
        return self.succeed(f"sleep {secs}")

    def succeed(self, *commands, timeout=None):
        return self._commands("succeed", commands, timeout)

    def fail(self, *commands, timeout=None):
        return self._commands("fail", commands, timeout)

    def _commands(self, method, commands, timeout):
        self._boot(method)
        ref = None
        for command in commands:
            command = self._rec.command(command, self.shared_dir)
            ref = self._rec.call(self.name, method, [command], timeout)
        return Out(self._rec, ref)

    def _systemctl(self, verb, *args, **kwargs):
        q = args[0] if args else kwargs.get("q", kwargs.get("jobname"))
        user = args[1] if len(args) > 1 else kwargs.get("user")
        return self.execute(systemctl_command(verb + q, user))

    def __getattr__(self, method):
        if method.startswith("_"):
            raise AttributeError(method)
        if method in SYSTEMCTL_METHODS:
            return lambda *args, **kwargs: self._systemctl(SYSTEMCTL_METHODS[method], *args, **kwargs)

        def record(*args, **kwargs):
            self._boot(method)
            full, timeout = self._bind(method, args, kwargs)
            if method in OUTPUT_METHODS or method == "execute":
                full[0] = self._rec.command(full[0], self.shared_dir)
            ref = self._rec.call(self.name, method, full, timeout)
            if method == "execute":
                return 0, Out(self._rec, ref)
            if method == "get_unit_info":
                return {"ActiveState": Out(self._rec, ref)}
            if method in OUTPUT_METHODS:
                return Out(self._rec, ref)
            return None

        return record


def pythonize(name):
    return "".join(c if (c.isascii() and (c.isalpha() or c == "_" or (i > 0 and c.isdigit()))) else "_"
                   for i, c in enumerate(name))


def run(script, nodes):
    """Runs `script`; returns its recorder and the exception it ended with."""
    rec = Recorder()
    shared_dir = tempfile.mkdtemp(prefix="fake-machine-shared-")
    machines = [Machine(n, rec, shared_dir) for n in nodes]
    env = {pythonize(m.name): m for m in machines}
    if len(machines) == 1 and "machine" not in env:
        env["machine"] = machines[0]

    def start_all():
        for m in machines:
            m.start()

    @contextlib.contextmanager
    def subtest(name):
        rec.events.append(["subtest", name])
        yield
        rec.events.append(["end-subtest", name])

    def retry(fn, timeout=900):
        if not fn(False):
            fn(True)

    class Log:
        def __getattr__(self, _):
            return lambda *a, **k: contextlib.nullcontext()

    env.update(start_all=start_all, subtest=subtest, retry=retry, log=Log(), machines=machines,
               __name__="__testScript__")
    real_search, real_sleep, real_match, real_fullmatch = re.search, time.sleep, re.match, re.fullmatch

    def search(pattern, string, flags=0):
        if isinstance(string, Out):
            rec.check(string._ref, "matches", string._transform, pattern, flags)
            return True
        return real_search(pattern, string, flags)

    def checker(kind, real):
        def check(pattern, string, flags=0):
            if isinstance(string, Out):
                rec.check(string._ref, kind, string._transform, pattern, flags)
                return True
            return real(pattern, string, flags)
        return check

    def not_in(needle, haystack):
        if isinstance(haystack, Out):
            rec.check(haystack._ref, "not-contains", haystack._transform, needle)
            return True
        return needle not in haystack

    class T:
        """The driver's `t` (a `unittest.TestCase`): the checks the importer
        maps are recorded like `in`, `not in` and `re.search`; any other
        assertion runs as unittest runs it (on an output, its `==` and `in`
        are recorded by `Out`)."""

        _real = unittest.TestCase()

        def assertIn(self, member, container, msg=None):
            if isinstance(container, Out):
                rec.check(container._ref, "contains", container._transform, member)
            else:
                self._real.assertIn(member, container, msg)

        def assertNotIn(self, member, container, msg=None):
            not_in(member, container) or self._real.fail(msg)

        def assertRegex(self, text, regex, msg=None):
            search(regex, text) or self._real.fail(msg)

        def __getattr__(self, name):
            return getattr(self._real, name)

    env["__nixvm_not_in__"] = not_in
    env["t"] = T()
    re.search = search
    re.match, re.fullmatch = checker("re.match", real_match), checker("re.fullmatch", real_fullmatch)
    time.sleep = lambda secs: rec.events.append(["sleep", secs])
    error = None
    try:
        # What the script prints is not part of the log (and not ours to show).
        with contextlib.redirect_stdout(io.StringIO()):
            exec(compile(not_in_as_call(script), "<testScript>", "exec"), env)
    except BaseException as e:  # noqa: BLE001 - the script's own failure is part of the log
        error = f"{type(e).__name__}: {e}"
    finally:
        re.search, time.sleep = real_search, real_sleep
        re.match, re.fullmatch = real_match, real_fullmatch
        shutil.rmtree(shared_dir, ignore_errors=True)
    return rec, error


def normalise(rec):
    """The comparable form of a log: first boots as a set, then the events."""
    first_boots, seen, events = set(), set(), []
    for e in rec.events:
        if e[0] == "boot" and e[1] not in seen:
            seen.add(e[1])
            first_boots.add(e[1])
            continue
        events.append(e)
    # The plain check of a capture is accounted for by the substitution.
    checks = {k: sorted(json.dumps(c) for c in v if c != ["matches", "", PLAIN_CAPTURE, 0])
              for k, v in rec.checks.items()}
    return sorted(first_boots), events, checks


def compare(nodes, original, generated):
    o_rec, o_err = run(original, nodes)
    g_rec, g_err = run(generated, nodes)
    o_boots, o_events, o_checks = normalise(o_rec)
    g_boots, g_events, g_checks = normalise(g_rec)
    problems = []
    if o_err:
        problems.append(f"the original script raised {o_err}")
    if g_err:
        problems.append(f"the generated script raised {g_err}")
    if o_boots != g_boots:
        problems.append(f"nodes booted: original {o_boots}, generated {g_boots}")
    call_o = call_g = 0
    for i in range(max(len(o_events), len(g_events))):
        o = o_events[i] if i < len(o_events) else None
        g = g_events[i] if i < len(g_events) else None
        if o is None or g is None or o[0] != g[0]:
            problems.append(f"event {i}: original {o}, generated {g}")
            break
        if o[0] == "call":
            same = o[1:4] == g[1:4] and (o[4] is None or o[4] == g[4])
            if not same:
                problems.append(f"call {call_o}: original {o[1:]}, generated {g[1:]}")
                break
            if o_checks.get(call_o, []) != g_checks.get(call_g, []):
                problems.append(f"checks on call {call_o} ({o[2]} {o[3]}): original {o_checks.get(call_o, [])}, "
                                f"generated {g_checks.get(call_g, [])}")
                break
            call_o += 1
            call_g += 1
        elif o != g:
            problems.append(f"event {i}: original {o}, generated {g}")
            break
    return {
        "equal": not problems,
        "problems": problems,
        "calls": o_rec.calls,
        "original": o_events,
        "generated": g_events,
    }


def main(argv):
    if len(argv) == 5 and argv[1] == "compare":
        nodes = [n for n in argv[2].split(",") if n]
        with open(argv[3]) as f:
            original = f.read()
        with open(argv[4]) as f:
            generated = f.read()
        result = compare(nodes, original, generated)
        print(json.dumps(result, indent=2))
        return 0 if result["equal"] else 1
    if len(argv) == 3 and argv[1] == "check-import":
        with open(argv[2]) as f:
            report = json.load(f)
        results, ok = [], True
        for t in report["tests"]:
            entry = {"source": t["source"], "line": t["line"], "name": t["name"], "full": t["full"]}
            if t["full"] or t.get("runnable"):
                r = compare(t["nodes"], t["original_script"], t["generated_script"])
                entry.update(equal=r["equal"], problems=r["problems"], calls=r["calls"])
                ok = ok and r["equal"]
            results.append(entry)
        print(json.dumps(results, indent=2))
        return 0 if ok else 1
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
