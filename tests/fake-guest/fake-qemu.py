#!/usr/bin/env python3
"""A fake QEMU + guest for nixvm-driver's unit tests (no VM involved).

It understands the arguments the driver appends to a start script, connects
to the driver's `monitor` and `shell` sockets like QEMU does, serves `qmp`,
prints "serial console" lines on stdout, sends the backdoor's ready marker
(after noise, split across writes) and then proxies the shell socket to a
local `bash --norc`, which runs the driver's framed commands for real.

Commands run ON THE HOST, so `poweroff` and friends are intercepted (the
`poweroff` line itself, and stub executables first on PATH).

Behaviour switches (environment, usually prefixed to the start script):
  FAKE_EXIT=N          print a few lines and exit N before connecting
  FAKE_BOOT_DELAY=S    seconds between connecting and the ready marker
  FAKE_NO_MARKER=1     never send the marker
  FAKE_DIE_ON=TEXT     exit 3 0.2 s after a shell line containing TEXT
  FAKE_UNITS=DIR       directory of unit states for the stub `systemctl`
  FAKE_COMMAND_DELAY=S seconds before each framed command (`bash -c … | base64`
                       or the fast protocol's `__nixvm_x`) starts, like its
                       cost on a TCG guest (0.2–0.4 s on the systemd stand-in);
                       other shell lines are not delayed
  FAKE_OLD_BASH=1      the backdoor bash says it is 4.4 (the driver must keep
                       the stock framing)
  FAKE_QMP_HANG=CMD    never answer the QMP command CMD (`query-migrate`: a
                       snapshot step hangs in QMP)
  FAKE_IGNORE_TERM=1   ignore SIGTERM (the driver's teardown must wait for its
                       grace period, then SIGKILL)
"""

import os
import signal
import socket
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def arg_after(flag):
    args = sys.argv[1:]
    for i, a in enumerate(args[:-1]):
        if a == flag:
            return args[i + 1]
    return None


def serial(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def descendants():
    """PIDs of our descendants. GNU `timeout` moves itself into its own
    process group, so the driver's killpg would miss the commands it runs;
    in a real VM they die with the guest, here they are killed by hand."""
    parent = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                parent[int(entry)] = int(fields[1])
            except (OSError, IndexError, ValueError):
                pass
    found, todo = [], [os.getpid()]
    while todo:
        pid = todo.pop()
        kids = [c for c, p in parent.items() if p == pid]
        found += kids
        todo += kids
    return found


DYING = threading.Lock()


def die(code):
    # One caller kills: a second one (the SIGTERM handler while a reader
    # thread saw EOF) would scan /proc after the first killed bash, miss
    # the reparented commands and exit before the first finished.
    if not DYING.acquire(blocking=False):
        while True:
            time.sleep(1)
    sys.stdout.flush()
    for pid in descendants():
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    os._exit(code)


def serve_qmp(path):
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(4)

    def client(conn):
        conn.sendall(b'{"QMP": {"version": {"qemu": {"major": 7}}, "capabilities": []}}\n')
        f = conn.makefile("rb")
        hang = os.environ.get("FAKE_QMP_HANG")
        for line in f:
            if hang and f'"{hang}"'.encode() in line:
                serial(f"fake-qemu: not answering {hang}")
                while True:
                    time.sleep(60)
            conn.sendall(b'{"return": {}}\n')

    def loop():
        while True:
            conn, _ = srv.accept()
            threading.Thread(target=client, args=(conn,), daemon=True).start()

    threading.Thread(target=loop, daemon=True).start()


def forward(host_port, guest_port):
    """Listens on 127.0.0.1:host_port and relays each connection to
    127.0.0.1:guest_port; False when the port is taken."""
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        srv.bind(("127.0.0.1", host_port))
    except OSError:
        return False
    srv.listen(8)

    def pipe(a, b):
        try:
            while True:
                data = a.recv(65536)
                if not data:
                    break
                b.sendall(data)
        except OSError:
            pass
        finally:
            try:
                b.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def loop():
        while True:
            conn, _ = srv.accept()
            try:
                up = socket.create_connection(("127.0.0.1", guest_port))
            except OSError:
                conn.close()
                continue
            threading.Thread(target=pipe, args=(conn, up), daemon=True).start()
            threading.Thread(target=pipe, args=(up, conn), daemon=True).start()

    threading.Thread(target=loop, daemon=True).start()
    return True


def serve_monitor(path):
    mon = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    mon.connect(path)
    mon.sendall(b"QEMU 7.2.0 monitor - type 'help' for more information\r\n(qemu) ")

    def loop():
        f = mon.makefile("rb")
        for raw in f:
            cmd = raw.decode(errors="replace").strip()
            out = cmd + "\r\n"
            # Every command, for tests of what the driver sends (keys).
            with open("monitor.log", "a") as log:
                log.write(cmd + "\n")
            if cmd.startswith("sendkey ") and "bogus" in cmd:
                # QEMU's answer to a key name it does not know (hmp_sendkey).
                out += "invalid parameter: bogus\r\n"
            if cmd == "quit":
                die(0)
            if cmd.startswith("sendkey ctrl-alt-delete"):
                serial("reboot: Restarting system")
                mon.sendall(out.encode() + b"(qemu) ")
                time.sleep(0.1)
                die(0)  # like QEMU with -no-reboot
            if cmd.startswith("hostfwd_add tcp::"):
                # QEMU's user network forwards a host port to the guest's; the
                # fake guest is this host, so to the local port.
                host, guest = cmd[len("hostfwd_add tcp::"):].split("-:", 1)
                if not forward(int(host), int(guest)):
                    out += "Could not set up host forwarding rule '" + cmd.split(" ", 1)[1] + "'\r\n"
            if cmd.startswith("screendump "):
                with open(cmd.split(" ", 1)[1], "w") as ppm:
                    ppm.write("P3\n1 1\n255\n255 0 0\n")
            mon.sendall(out.encode() + b"(qemu) ")
        die(0)

    threading.Thread(target=loop, daemon=True).start()


def main():
    if os.environ.get("FAKE_IGNORE_TERM"):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    else:
        signal.signal(signal.SIGTERM, lambda *_: die(143))
    if os.environ.get("FAKE_EXIT"):
        serial("fake-qemu: starting")
        serial("fake-qemu: failing on purpose")
        # QEMU's own complaint goes to stderr, not the serial console.
        sys.stderr.write("qemu-system-x86_64: fake-qemu: exiting with " + os.environ["FAKE_EXIT"] + "\n")
        sys.stderr.flush()
        die(int(os.environ["FAKE_EXIT"]))

    qmp = arg_after("-qmp").split("unix:", 1)[1].split(",", 1)[0]
    monitor = arg_after("-monitor").split("unix:", 1)[1]
    chardev = arg_after("-chardev")
    shell_path = [p.split("=", 1)[1] for p in chardev.split(",") if p.startswith("path=")][0]

    serve_qmp(qmp)
    serve_monitor(monitor)
    shell = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    shell.connect(shell_path)

    serial("[    0.000000] Linux version 6.1.0-fake (fake@guest)")
    serial("Welcome to FakeOS!")
    time.sleep(float(os.environ.get("FAKE_BOOT_DELAY", "0")))
    if os.environ.get("FAKE_NO_MARKER"):
        serial("backdoor.service: not starting (FAKE_NO_MARKER)")
        while True:
            time.sleep(60)
    serial("connecting to host...")
    shell.sendall(b"\x1b[0m garbage from getty\r\n Spawning backdoor ro")
    time.sleep(0.05)
    shell.sendall(b"ot shell...\n")

    env = dict(os.environ)
    env["PATH"] = os.path.join(HERE, "bin") + ":" + env.get("PATH", "")
    env["FAKE_QEMU_PID"] = str(os.getpid())
    env["FAKE_STATE_DIR"] = os.getcwd()
    env.setdefault("FAKE_UNITS", os.path.join(os.getcwd(), "units"))
    shared = env.get("SHARED_DIR", os.path.join(os.getcwd(), "xchg"))
    # Its own session: the driver's SIGTERM to our group must reach us first,
    # so that die() still finds the guest commands as our descendants.
    # The backdoor's stderr is the serial console (ttyS0) in a real guest,
    # i.e. QEMU's stdout, not QEMU's own stderr: forwarded by a thread (bash
    # itself must not hold the driver's pipe open after we exit).
    bash = subprocess.Popen(
        ["bash", "--norc"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=os.getcwd(),
        # Ignoring SIGTERM, we die by the driver's SIGKILL to our group, with
        # no die(): the guest's processes must be in that group then.
        start_new_session=not os.environ.get("FAKE_IGNORE_TERM"),
    )

    def console_from_stderr():
        for line in iter(bash.stderr.readline, b""):
            sys.stdout.write(line.decode("utf-8", "replace"))
            sys.stdout.flush()

    threading.Thread(target=console_from_stderr, daemon=True).start()
    if os.environ.get("FAKE_OLD_BASH"):
        bash.stdin.write(b"BASH_VERSION=4.4.23\n")
        bash.stdin.flush()
    die_on = os.environ.get("FAKE_DIE_ON")
    command_delay = float(os.environ.get("FAKE_COMMAND_DELAY", "0"))

    def to_guest():
        buf = b""
        while True:
            chunk = shell.recv(4096)
            if not chunk:
                die(0)
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                if line.strip() == b"poweroff":
                    serial("reboot: Power down")
                    die(0)
                if die_on and die_on.encode() in line:
                    threading.Timer(0.2, die, args=(3,)).start()
                framed = b"| (base64 -w 0; echo)" in line or line.startswith(b"__nixvm_x ")
                if command_delay and framed:
                    time.sleep(command_delay)
                line = line.replace(b"/tmp/shared", shared.encode())
                bash.stdin.write(line + b"\n")
                bash.stdin.flush()

    def from_guest():
        while True:
            data = bash.stdout.read1(65536)
            if not data:
                break
            shell.sendall(data)

    def from_guest_then_exit():
        from_guest()
        die(0)

    threading.Thread(target=to_guest, daemon=True).start()
    threading.Thread(target=from_guest_then_exit, daemon=True).start()
    # The main thread only waits, so that it runs the SIGTERM handler promptly.
    while True:
        time.sleep(0.05)


if __name__ == "__main__":
    main()
