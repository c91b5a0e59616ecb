#!/usr/bin/env python3
"""Summarises a run of benches/import/run.sh: per file, whether every test
in it was converted fully and its call log equals the original's (via
fake_machine.compare), converted with leftovers, or not imported; then the
top blockers by construct."""

import collections
import json
import os
import re
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fake_machine  # noqa: E402


def blocker(leftover):
    """A leftover's kind, with the specifics (names, values) taken out."""
    construct, why = leftover["construct"], leftover["why"].split("; not kept as a python step")[0]
    if "Nix value" in why:
        return "Nix interpolation ${…} in a step"
    if construct.startswith("node `"):
        return "node uses a variable from outside the test"
    if construct.startswith("option `"):
        return "option " + construct.split("`")[1].split(".")[0]
    if "is used later" in why:
        return "output used later (capture)"
    if "is a Python variable" in why:
        return "Python variable in an argument"
    if construct.startswith("Machine.") and "has no step" in why:
        return construct
    if construct == "assert":
        return "assert (not an `in`/re.search on an output)"
    return re.sub(r"`[^`]*`", "`…`", construct)


def main(work, count, json_out=None):
    files = []
    blockers = collections.Counter()
    mismatches = []
    for i in range(1, count + 1):
        with open(f"{work}/{i}.file") as f:
            path = f.read().strip()
        try:
            with open(f"{work}/{i}.json") as f:
                report = json.load(f)
        except (OSError, ValueError):
            report = {"tests": [], "failed": [open(f"{work}/{i}.err").read().strip()]}
        tests = report.get("tests", [])
        verdicts = []
        runnable = []
        for t in tests:
            equal = None
            # With --python-steps, a test whose leftovers are all python steps
            # runs: its call log is compared too.
            if t["full"] or t.get("runnable"):
                r = fake_machine.compare(t["nodes"], t["original_script"], t["generated_script"])
                equal = r["equal"]
                if not equal and r["problems"][0].startswith("the original script raised"):
                    # The fake cannot run the original (it computes on an
                    # output, e.g. json.loads): not compared, so not proven.
                    blockers["original not comparable by the fake Machine"] += 1
                elif not equal:
                    mismatches.append({"file": path, "test": t["name"], "problems": r["problems"]})
            runnable.append(bool(t["full"] or t.get("runnable")) and equal)
            for l in t["leftovers"]:
                blockers[blocker(l)] += 1
            if t["description_errors"]:
                blockers["description invalid (" + t["description_errors"][0].split("] ")[0] + "])"] += 1
            verdicts.append(t["full"] and equal)
        if not tests:
            status = "not imported"
            for msg in report.get("failed", []):
                blockers["not imported: " + ("no test found" if "no test found" in msg else msg.split(": ", 1)[-1][:60])] += 1
        elif all(verdicts):
            status = "full"
        elif all(runnable):
            status = "python steps"
        else:
            status = "leftovers"
        files.append({"file": path, "status": status, "tests": len(tests),
                      "full_tests": sum(1 for v in verdicts if v)})
    n = len(files)
    by = collections.Counter(f["status"] for f in files)
    tests_total = sum(f["tests"] for f in files)
    tests_full = sum(f["full_tests"] for f in files)
    print(f"files: {n}")
    for status in ("full", "python steps", "leftovers", "not imported"):
        if status == "python steps" and not by[status]:
            continue
        share = 100.0 * by[status] / n if n else 0.0
        print(f"  {status:13} {by[status]:4}  {share:5.1f} %")
    if by["python steps"]:
        print("  (python steps: converted with leftovers, every leftover kept as a `python` step and the call log equal)")
    print(f"tests: {tests_total}, fully converted and call-log equal: {tests_full}")
    print(f"call-log mismatches among compared conversions: {len(mismatches)}")
    for m in mismatches:
        print(f"  MISMATCH {m['file']} {m['test']}: {m['problems'][0]}")
    print("top blockers (occurrences):")
    for name, c in blockers.most_common(15):
        print(f"  {c:5}  {name}")
    if json_out:
        with open(json_out, "w") as f:
            json.dump({"files": files, "blockers": blockers.most_common(), "mismatches": mismatches}, f, indent=2)
    return 1 if mismatches else 0


if __name__ == "__main__":
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `run.sh DIR | head` is fine
    sys.exit(main(sys.argv[1], int(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else None))
