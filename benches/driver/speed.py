#!/usr/bin/env python3
"""Driver speed after boot, on a stand-in guest (tests/guest/), against a bare
reference client measured in the same run. A benchmark, not a timed test.

Each round boots the guest three times, in this order:

  bare    a minimal client written here: it starts the VM like the stock
          driver (sockets, start script), waits for the backdoor marker and
          then only frames commands the stock way (` bash -c 'set -euo
          pipefail; CMD' | (base64 -w 0; echo)`, then `echo ${PIPESTATUS[0]}`;
          `timeout 900` in front where the stock method passes its default);
          its waits are the stock `retry` (probe, 1 s pause). The floor of the
          stock framing, and a stand-in for the stock driver's behaviour.
  fast    nixvm-driver with its default (fast) backdoor protocol.
  stock   nixvm-driver with NIXVM_BACKDOOR_PROTOCOL=stock (stock framing).

All three run the same sequence after boot:
  1. the health example's steps (waitForUnit syshc.service, waitForOpenPort
     3000, GET http://localhost:3000/ containing "Healthy"): "post-boot" is
     connected-to-shell → last of these done;
  2. waits whose condition already holds: waitForOpenPort 3000 and
     waitForUnit syshc.service, WAITS times each (bare: one stock probe each);
  3. `succeed "true"` COUNT times (round trip);
  4. detection latency (driver only): a step starts
     `(sleep 1; touch /tmp/xchg/condK) &`, the next is waitForFile on it; the
     latency is the host time of that step's end − the file's mtime (9p share,
     host clock);
  5. teardown: end of the last step → process exit (bare: SIGTERM to QEMU →
     QEMU gone, as the stock `release()`).
Driver CPU (utime+stime) and peak RSS (VmHWM) are sampled from /proc.

Usage: benches/driver/speed.py [--rounds R] [--count N] [--waits W]
         [--kind systemd|busybox] [--driver PATH] [--no-append]
"""

import argparse
import base64
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
MARKER = b"Spawning backdoor root shell..."
CURL = "curl --silent --show-error --location --write-out '\\n%{http_code}' --url http://localhost:3000/"


def quote(s):
    if s and re.fullmatch(r"[A-Za-z0-9_@%+=:,./-]+", s):
        return s
    return "'" + s.replace("'", "'\"'\"'") + "'"


def pct(xs, p):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = (len(xs) - 1) * p
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


class Sampler(threading.Thread):
    """Peak RSS (VmHWM) and CPU ticks of one process, until it exits."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.hwm_kib, self.ticks, self.stop = pid, 0, 0, False

    def run(self):
        while not self.stop:
            try:
                with open(f"/proc/{self.pid}/status") as f:
                    for line in f:
                        if line.startswith("VmHWM:"):
                            self.hwm_kib = max(self.hwm_kib, int(line.split()[1]))
                with open(f"/proc/{self.pid}/stat") as f:
                    st = f.read().rsplit(")", 1)[1].split()
                    if st[0] != "Z":
                        self.ticks = int(st[11]) + int(st[12])
            except (OSError, IndexError, ValueError):
                pass
            time.sleep(0.05)


class Bare:
    """The reference client: the stock start sequence and framing, nothing else."""

    def __init__(self, script, tmp):
        self.state = os.path.join(tmp, "vm-state-machine")
        os.makedirs(self.state, mode=0o700)
        self.listeners = {}
        for name in ("monitor", "shell"):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.bind(os.path.join(self.state, name))
            s.listen(1)
            self.listeners[name] = s
        st = self.state
        args = (f" -qmp unix:{st}/qmp,server=on,wait=off -monitor unix:{st}/monitor"
                f" -chardev socket,id=shell,path={st}/shell -device virtio-serial"
                f" -device virtconsole,chardev=shell -device virtio-rng-pci -serial stdio -no-reboot -nographic")
        os.makedirs(os.path.join(tmp, "shared-xchg"))
        env = dict(os.environ, TMPDIR=st, USE_TMPDIR="1", SHARED_DIR=os.path.join(tmp, "shared-xchg"))
        self.proc = subprocess.Popen(["/bin/sh", "-c", script + args], cwd=st, env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self.drain = threading.Thread(target=self._drain, daemon=True)
        self.drain.start()
        self.monitor, _ = self.listeners["monitor"].accept()
        self.shell, _ = self.listeners["shell"].accept()
        self.spawned = time.time()

    def _drain(self):
        self.console = []
        for line in self.proc.stdout:
            self.console = (self.console + [line])[-20:]

    def connect(self):
        buf = b""
        while MARKER not in buf:
            chunk = self.shell.recv(1024)
            if not chunk:
                time.sleep(0.5)
                raise RuntimeError("shell closed before the marker: " + b"".join(self.console).decode(errors="replace"))
            buf = (buf + chunk)[-2 * len(MARKER):]
        self.connected = time.time()

    def _line(self):
        out = b""
        while not out.endswith(b"\n"):
            chunk = self.shell.recv(4096)
            if not chunk:
                raise RuntimeError("shell closed")
            out += chunk
        return out

    def execute(self, command, timeout=900):
        prefix = f"timeout {timeout}" if timeout is not None else ""
        self.shell.sendall(f"{prefix} bash -c {quote('set -euo pipefail; ' + command)} | (base64 -w 0; echo)\n".encode())
        self._line()
        self.shell.sendall(b"echo ${PIPESTATUS[0]}\n")
        return int(self._line().strip())

    def retry(self, probe, budget=900):
        start = time.monotonic()
        while time.monotonic() - start < budget:
            if probe():
                return
            time.sleep(1)
        raise RuntimeError("timed out")

    def health(self):
        def unit_active():
            # `get_unit_info` parses `systemctl --no-pager show`; one execute.
            inner = quote('set -euo pipefail; systemctl --no-pager show "syshc.service"')
            self.shell.sendall(f"timeout 900 bash -c {inner} | (base64 -w 0; echo)\n".encode())
            out = base64.b64decode(self._line())
            self.shell.sendall(b"echo ${PIPESTATUS[0]}\n")
            self._line()
            return b"\nActiveState=active\n" in b"\n" + out
        self.retry(unit_active)
        self.retry(lambda: self.execute("nc -z localhost 3000") == 0)
        if self.execute(CURL, None) != 0:
            raise RuntimeError("curl failed")
        self.health_done = time.time()

    def release(self):
        t = time.time()
        os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait()
        self.drain.join(10)  # QEMU's stdout closed: QEMU is gone
        self.shell.close()
        self.monitor.close()
        return time.time() - t


def bare_round(script, count, waits):
    with tempfile.TemporaryDirectory(prefix="nvs-bare-") as tmp:
        b = Bare(script, tmp)
        try:
            b.connect()
            b.health()
            port = [timed(lambda: b.execute("nc -z localhost 3000")) for _ in range(waits)]
            unit = [timed(lambda: b.execute('systemctl --no-pager show "syshc.service"')) for _ in range(waits)]
            rt = [timed(lambda: b.execute("true", None)) for _ in range(count)]
            teardown = b.release()
        except BaseException:
            os.killpg(b.proc.pid, signal.SIGKILL)
            raise
        return dict(boot=b.connected - b.spawned, postboot=b.health_done - b.connected, port=port, unit=unit,
                    rt=rt, latency=[], teardown=teardown, cpu=None, rss=None)


def timed(f):
    t = time.monotonic()
    f()
    return time.monotonic() - t


def driver_round(driver, script, count, waits, latency_waits, protocol):
    def st(timeout, action):
        return {"node": "machine", "timeout": timeout, "action": action}
    steps = [st(120, {"waitForUnit": {"unit": "syshc.service"}}), st(60, {"waitForOpenPort": {"port": 3000}}),
             st(30, {"http": {"url": "http://localhost:3000/", "contains": "Healthy"}})]
    steps += [st(30, {"waitForOpenPort": {"port": 3000}}) for _ in range(waits)]
    steps += [st(30, {"waitForUnit": {"unit": "syshc.service"}}) for _ in range(waits)]
    steps += [st(30, {"succeed": {"command": "true"}}) for _ in range(count)]
    for k in range(latency_waits):
        steps.append(st(30, {"succeed": {"command": f"(sleep 1; touch /tmp/xchg/cond{k}) > /dev/null 2>&1 &"}}))
        steps.append(st(30, {"waitForFile": {"path": f"/tmp/xchg/cond{k}"}}))
    with tempfile.TemporaryDirectory(prefix="nvs-drv-") as tmp:
        config = {"vms": {"machine": {"name": "machine", "start_script": script}}, "vlans": [],
                  "global_timeout": 900, "enable_ssh_backdoor": False, "test_script": "/dev/null"}
        plan = {"version": 1, "name": "speed", "nodes": ["machine"], "steps": steps}
        for name, data in (("config.json", config), ("plan.json", plan)):
            with open(os.path.join(tmp, name), "w") as f:
                json.dump(data, f)
        out = os.path.join(tmp, "out")
        os.makedirs(out)
        os.makedirs(os.path.join(tmp, "t"))
        env = dict(os.environ, TMPDIR=os.path.join(tmp, "t"), XDG_RUNTIME_DIR=os.path.join(tmp, "t"),
                   NIXVM_BACKDOOR_PROTOCOL=protocol)
        lines = []
        proc = subprocess.Popen([driver, "--config", os.path.join(tmp, "config.json"), "--plan",
                                 os.path.join(tmp, "plan.json"), "-o", out], env=env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        sampler = Sampler(proc.pid)
        sampler.start()

        def read():
            for line in proc.stderr:
                lines.append((time.time(), line.decode(errors="replace")))
        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        code = proc.wait()
        exited = time.time()
        sampler.stop = True
        reader.join()
        if code != 0:
            sys.stderr.write("".join(l for _, l in lines[-40:]))
            raise RuntimeError(f"driver ({protocol}) exited with {code}")
        report = json.load(open(os.path.join(out, "report.json")))
        durs = [s["durationSecs"] for s in report["steps"]]
        ends = {}
        connected = spawned = None
        for t, line in lines:
            m = re.match(r"\[(\d+)/\d+\] .* \.\.\. ok", line)
            if m:
                ends[int(m.group(1))] = t
            if "connected to guest root shell" in line and connected is None:
                connected = t
            if "QEMU running" in line and spawned is None:
                spawned = t
        lat = []
        base = 3 + 2 * waits + count
        for k in range(latency_waits):
            mtime = os.stat(os.path.join(tmp, "t", "vm-state-machine", "xchg", f"cond{k}")).st_mtime
            lat.append(ends[base + 2 * k + 2] - mtime)
        last = max(ends.values())
        hz = os.sysconf("SC_CLK_TCK")
        return dict(boot=connected - spawned, postboot=ends[3] - connected,
                    port=durs[3:3 + waits], unit=durs[3 + waits:3 + 2 * waits],
                    rt=durs[3 + 2 * waits:3 + 2 * waits + count], latency=lat,
                    teardown=exited - last, cpu=sampler.ticks / hz, rss=sampler.hwm_kib / 1024)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--count", type=int, default=200)
    ap.add_argument("--waits", type=int, default=10)
    ap.add_argument("--latency-waits", type=int, default=5)
    ap.add_argument("--kind", default="systemd")
    ap.add_argument("--driver")
    ap.add_argument("--no-append", action="store_true")
    a = ap.parse_args()
    driver = a.driver
    if not driver:
        subprocess.run(["cargo", "build", "--quiet", "--release", "--bin", "nixvm-driver"], cwd=ROOT, check=True)
        driver = os.path.join(ROOT, "target", "release", "nixvm-driver")
    subprocess.run(["bash", os.path.join(ROOT, "tests/guest/build.sh")], check=True, stdout=subprocess.DEVNULL)
    vms = tempfile.mkdtemp(prefix="nvs-vms-")
    script = subprocess.run(["bash", os.path.join(ROOT, "tests/guest/make-vm.sh"), "--out", vms, "--node", "machine",
                             "--kind", a.kind, "--vlans", ""], check=True, capture_output=True, text=True).stdout.strip()
    load_before = open("/proc/loadavg").read().split()[:3]
    results = {"bare": [], "fast": [], "stock": []}
    for r in range(a.rounds):
        for who in ("bare", "fast", "stock"):
            print(f"round {r + 1}/{a.rounds}: {who}", file=sys.stderr)
            if who == "bare":
                results[who].append(bare_round(script, a.count, a.waits))
            else:
                results[who].append(driver_round(driver, script, a.count, a.waits, a.latency_waits, who))
    load_after = open("/proc/loadavg").read().split()[:3]

    def pooled(who, key):
        return [x for run in results[who] for x in run[key]]

    def med(who, key):
        vals = [run[key] for run in results[who] if run[key] is not None]
        return statistics.median(vals) if vals else float("nan")

    bare_rt = statistics.median(pooled("bare", "rt"))
    bare_port = statistics.median(pooled("bare", "port"))
    bare_unit = statistics.median(pooled("bare", "unit"))
    rows = []
    for who in ("bare", "fast", "stock"):
        rt = pooled(who, "rt")
        lat = pooled(who, "latency")
        rows.append((who, statistics.median(rt), pct(rt, 0.9), statistics.median(rt) / bare_rt,
                     statistics.median(pooled(who, "port")), statistics.median(pooled(who, "port")) / bare_port,
                     statistics.median(pooled(who, "unit")), statistics.median(pooled(who, "unit")) / bare_unit,
                     statistics.median(lat) if lat else float("nan"), pct(lat, 0.9) if lat else float("nan"),
                     med(who, "postboot"), med(who, "postboot") / med("bare", "postboot"),
                     med(who, "teardown"), med(who, "teardown") / med("bare", "teardown"),
                     med(who, "cpu"), med(who, "rss"), med(who, "boot")))
    head = ("| client | `true` median s | p90 s | ×bare | open-port wait s | ×probe | active-unit wait s | ×probe "
            "| detection median s | p90 s | post-boot s | ×bare | teardown s | ×bare | driver CPU s | driver peak RSS MiB "
            "| boot s |")
    out = [head, "|" + "---|" * 17]
    for row in rows:
        cells = [row[0]] + ["–" if isinstance(v, float) and v != v else f"{v:.3f}" for v in row[1:]]
        out.append("| " + " | ".join(cells) + " |")
    table = "\n".join(out)
    per_round = ["| round | client | post-boot s | teardown s | `true` median s | boot s |", "|---|---|---|---|---|---|"]
    for r in range(a.rounds):
        for who in ("bare", "fast", "stock"):
            run = results[who][r]
            per_round.append(f"| {r + 1} | {who} | {run['postboot']:.3f} | {run['teardown']:.3f} | "
                             f"{statistics.median(run['rt']):.3f} | {run['boot']:.2f} |")
    print(table)
    print()
    print("\n".join(per_round))
    if a.no_append:
        return
    rev = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", ROOT, "diff", "--quiet", "HEAD", "--", "src"]).returncode != 0
    accel = open(os.path.join(os.environ.get("NIXVM_GUEST_CACHE", os.path.join(ROOT, "tests/guest/cache")),
                              "current", "accel")).read().strip()
    mem = int(open("/proc/meminfo").read().split()[1]) / 1048576
    stamp = time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime())
    with open(os.path.join(ROOT, "benches", "RESULTS.md"), "a") as f:
        f.write(f"\n## nixvm-driver speed after boot vs a bare stock-framing client ({stamp})\n\n")
        f.write(f"`benches/driver/speed.py --rounds {a.rounds} --count {a.count} --waits {a.waits} "
                f"--latency-waits {a.latency_waits} --kind {a.kind}`; machine: {os.cpu_count()} cores, {mem:.0f} GiB, "
                f"{os.uname().release}, accel {accel}; load (1/5/15 min) before {' '.join(load_before)}, "
                f"after {' '.join(load_after)}; commit {rev}{' + uncommitted src changes' if dirty else ''}; "
                f"driver `{os.path.relpath(driver, ROOT)}`. Medians over all rounds (round trips and waits "
                f"pooled); ×bare / ×probe = ratio to the bare client's figure in the same run (its open-port / "
                f"active-unit figure is one stock probe, `timeout 900 bash -c '…' | base64` + `echo "
                f"${{PIPESTATUS[0]}}`).\n\n")
        f.write(table + "\n\n" + "\n".join(per_round) + "\n")
    print("appended to benches/RESULTS.md", file=sys.stderr)


if __name__ == "__main__":
    main()
