//! The fast backdoor protocol: shell helpers defined once per connection in
//! the guest's persistent backdoor `bash`, so that a command costs one fork
//! instead of the stock framing's `timeout`, `bash -c` and `base64` (three
//! programs started). Both take two round trips: the stock framing's second
//! one reads the exit status, ours is the probe that keeps a reply from being
//! dropped on a flooded channel (below).
//!
//! The backdoor is nixpkgs' `backdoor.service`: after the ready marker it
//! runs `PS1="" exec ${pkgs.bashNonInteractive}/bin/bash --norc /dev/hvc0`
//! with stdin and stdout on `/dev/hvc0` (`stty raw -echo`) and stderr on the
//! serial console (nixpkgs `nixos/modules/testing/test-instrumentation.nix`,
//! commit 026aeb71eaa8d887813bf2f3302fb5bb1ca5faf2). The stock driver sends
//! `timeout T bash -c 'set -euo pipefail; CMD' | (base64 -w 0; echo)` and
//! then `echo ${PIPESTATUS[0]}` (`nixos/lib/test-driver/src/test_driver/
//! machine/__init__.py`, `_execute`, commit
//! 019697db058b6738eda0cb2cdcc9f5c014c914cb).
//!
//! What the helpers keep from the stock semantics, and how:
//! * a fresh `set -euo pipefail` environment per command: a subshell (fork,
//!   no exec) that sets the options, clears the positional parameters and
//!   `eval`s the command, so nothing it changes survives it; never run in a
//!   `||`/`if` context, where bash would ignore `-e`;
//! * stdout bytes exact: stdout goes to an unlinked file opened once per
//!   connection (append mode, truncated before each command) and is sent back
//!   raw after a header with its length (`\x01NIXVM <seq> <status> <len>`);
//!   the console is raw (`stty raw`), so NUL and non-UTF-8 bytes pass, and
//!   the length is counted in bytes (`LC_ALL=C`). No `base64`;
//! * stderr to the console (inherited from the backdoor), stdin the
//!   backdoor's (hvc0), as with `bash -c`;
//! * the exit status of the command; 124 when the deadline ended it;
//! * the deadline without `timeout`: one watchdog subshell per connection
//!   waits with `read -t` on a pipe; when a command's time is up it sends
//!   SIGTERM to the command and all its descendants (found in `/proc`, as a
//!   non-interactive bash has no process groups of its own), SIGKILL one
//!   second later;
//! * the backdoor's own stdin and stdout stay the channel at every moment:
//!   the persistent shell never redirects a builtin (`printf >&fd`, `<file`),
//!   since bash does that by pointing its fd 0 or 1 elsewhere for a moment,
//!   and a guest program opening `/proc/<backdoor>/fd/1` in that moment wrote
//!   into the watchdog's FIFO and desynchronised it: later replies went
//!   missing. So the command's subshell sends the watchdog its request, and
//!   the shell says "done" by closing its end of a FIFO (`exec {w}>&-`), which
//!   the watchdog reads as end of file;
//! * no byte of a reply lost on a flooded channel: QEMU's virtconsole drops
//!   what the host's socket cannot take at once, so the reply starts with a
//!   probe repeated until the host acknowledges it (whatever a guest program
//!   wrote to `/dev/hvc0` has been read by then), and a long body goes out
//!   one [`WINDOW`] at a time, each acknowledged (comment lines the shell
//!   reads from stdin, harmless if one is left over);
//! * the reply is sent when the command exits, not when its stdout closes:
//!   a process left in the background no longer blocks it (stock waits
//!   until the guest-side `timeout`; nixpkgs issue #144875).
//!
//! Needs bash ≥ 5 (`{var}` descriptors, `wait` on a pid, `$EPOCHREALTIME`),
//! `mktemp`, `mkfifo` and `rm` once per connection (coreutils), a writable
//! `$TMPDIR` or `/tmp`, and `/proc`. The negotiation line checks them and answers
//! `nixvm-stock` when one is missing; the driver then keeps the stock framing.

use std::time::Duration;

use super::shell_quote;

/// Start of every reply header.
pub const REPLY_MARK: &[u8] = b"\x01NIXVM ";

/// Body bytes the guest sends before it waits for the host's acknowledgement
/// ([`window_ack`]). QEMU's virtconsole drops whatever its socket to the host
/// cannot take at once (`flush_buf` in `hw/char/virtio-console.c`, "silently
/// dropping console data on EAGAIN"), and that socket holds about 200 kB: a
/// window well below that loses nothing however late the host reads.
pub const WINDOW: usize = 65536;

/// The host's answer to a reply's probe (`\x01NIXVM <seq> ?`), which the
/// guest repeats every 0.5 s until it gets this: the host has read everything
/// before the probe, so the channel is empty when the header goes out (a
/// guest program may have flooded it with its own bytes just before).
pub fn probe_ack(seq: u64) -> String {
    format!("#nixvm {seq}\n")
}

/// The host's acknowledgement of the first `bytes` body bytes of reply
/// `seq` (a multiple of [`WINDOW`] below the body's length). Like
/// [`probe_ack`] a comment line: a stray one read by the backdoor's bash
/// does nothing.
pub fn window_ack(seq: u64, bytes: usize) -> String {
    format!("#nixvm {seq} {bytes}\n")
}

/// Answer of the negotiation line when the helpers cannot be used.
pub const STOCK_ANSWER: &[u8] = b"nixvm-stock\n";

/// The helpers, sent once per connection (`eval`ed by the negotiation line,
/// so an old bash that cannot parse them only reports `nixvm-stock`).
///
/// `__nixvm_o` is the output file, `__nixvm_z` a FIFO nobody writes (a
/// `read -t` on it is a sleep without `sleep`), `__nixvm_q`/`__nixvm_a` the
/// watchdog's request and answer FIFOs, `__nixvm_e` (read end, the shell
/// reopens it for writing per command) the FIFO whose end of file tells the
/// watchdog that the command is done; all opened once and unlinked at once.
/// (Process substitution would save `mkfifo` but needs `/dev/fd`, which a
/// minimal initramfs may lack.)
const HELPERS: &str = r##"__nixvm_init() {
  local d w
  d=$(mktemp -d) || return 1
  if mkfifo "$d/z" "$d/q" "$d/a" "$d/e" &&
    exec {__nixvm_o}>>"$d/o" {__nixvm_z}<>"$d/z" {__nixvm_q}<>"$d/q" {__nixvm_a}<>"$d/a" {w}<>"$d/e" {__nixvm_e}<"$d/e"
  then exec {w}>&-; rm -rf "$d"; else rm -rf "$d"; return 1; fi
  __nixvm_watchdog {__nixvm_o}>&- </dev/null >/dev/null &
}
__nixvm_tree() {
  local f s p c; local -A k=(["$2"]=1); local -a l=()
  for f in /proc/[0-9]*/stat; do
    read -r s 2>/dev/null <"$f" || continue
    p=${f#/proc/}; p=${p%/stat}; s=${s##*) }; s=${s#* }; l+=("$p:${s%% *}")
  done
  c=1
  while ((c)); do c=0
    for s in "${l[@]}"; do p=${s%%:*}
      if [[ -z ${k[$p]-} && -n ${k[${s#*:}]-} ]]; then k[$p]=1; c=1; fi
    done
  done
  kill -s "$1" "${!k[@]}" 2>/dev/null
}
__nixvm_watchdog() {
  local p t v
  while read -r -u "$__nixvm_q" p t; do
    read -r -t "$t" -u "$__nixvm_e" v
    if (($? <= 128)); then printf 'k\n' >&"$__nixvm_a"; continue; fi
    __nixvm_tree TERM "$p"
    read -r -t 1 -u "$__nixvm_e" v
    (($? <= 128)) || { __nixvm_tree KILL "$p"; read -r -u "$__nixvm_e" v; }
    printf 't\n' >&"$__nixvm_a"
  done
}
__nixvm_x() {
  local s p v=k w= f
  exec {f}>"/proc/self/fd/$__nixvm_o" {f}>&-
  [ "$2" = - ] || exec {w}>"/proc/self/fd/$__nixvm_e"
  (
    if [ -n "$w" ]; then printf '%s %s\n' "$BASHPID" "$2" >&"$__nixvm_q"; exec {w}>&-; fi
    exec {__nixvm_q}>&- {__nixvm_a}>&- {__nixvm_o}>&- {__nixvm_e}<&-; __nixvm_c=$3; set -euo pipefail --; eval "$__nixvm_c"
  ) <&0 >&"$__nixvm_o" & p=$!
  wait "$p"; s=$?
  if [ -n "$w" ]; then exec {w}>&-; read -r -u "$__nixvm_a" v; fi
  [ "$v" = k ] || s=124
  __nixvm_reply "$1" "$s"
}
__nixvm_reply() {
  local LC_ALL=C c n=0 i=0 f; local -a a=()
  exec {f}<"/proc/self/fd/$__nixvm_o"
  while IFS= read -r -d '' -u "$f" c; do a[i++]=$c; n=$((n+${#c}+1)); done
  exec {f}<&-
  a[i]=$c; n=$((n+${#c}))
  while :; do
    printf '\001NIXVM %s ?\n' "$1"
    while :; do
      IFS= read -r -t 0.5 -u 0 c; f=$?
      ((f == 0)) || break
      [ "$c" = "#nixvm $1" ] && break 2
    done
    ((f > 128)) || return 1
  done
  printf '\001NIXVM %s %s %s\n' "$1" "$2" "$n"
  if ((n <= __nixvm_w)); then
    ((i)) && printf '%s\0' "${a[@]:0:i}"
    printf '%s' "${a[i]}"
    return 0
  fi
  local j k o l w=0 t=0
  for ((j = 0; j <= i; j++)); do
    o=0; l=${#a[j]}
    while ((o < l)); do
      k=$((l - o < __nixvm_w - w ? l - o : __nixvm_w - w))
      printf '%s' "${a[j]:o:k}"; o=$((o + k)); w=$((w + k)); t=$((t + k))
      if ((w == __nixvm_w && t < n)); then __nixvm_ack "#nixvm $1 $t" || return 1; w=0; fi
    done
    ((j < i)) || break
    printf '\0'; w=$((w + 1)); t=$((t + 1))
    if ((w == __nixvm_w && t < n)); then __nixvm_ack "#nixvm $1 $t" || return 1; w=0; fi
  done
}
__nixvm_ack() {
  local v
  while IFS= read -r -u 0 v; do [ "$v" = "$1" ] && return 0; done
  return 1
}
__nixvm_slurp() {
  local c r=
  while IFS= read -r -d '' c; do r+=$c; done
  printf -v "$1" '%s' "$r$c"
}
__nixvm_poll() {
  set +e
  local end=$(( ${EPOCHREALTIME//[!0-9]/} + $1 )) s o j t n p
  while :; do
    t=${EPOCHREALTIME//[!0-9]/}
    : >/proc/self/fd/1
    ( __nixvm_c=$5; set -euo pipefail --; eval "$__nixvm_c" ); s=$?
    case $2 in
      s) [ "$s" -eq "$3" ] && break ;;
      f) [ "$s" -ne 0 ] && break ;;
      c) if [ "$s" -eq "$3" ]; then __nixvm_slurp o </proc/self/fd/1; [[ $o == *"$4"* ]] && break; fi ;;
      u) [ "$s" -ne 0 ] && break
         __nixvm_slurp o </proc/self/fd/1; o=$'\n'$o$'\n'
         case $o in
           *$'\nActiveState=active\n'*|*$'\nActiveState=failed\n'*) break ;;
           *$'\nActiveState=inactive\n'*) j=$(eval "$4" 2>&1) || :; [[ $j == *'No jobs'* ]] && break ;;
         esac ;;
    esac
    n=${EPOCHREALTIME//[!0-9]/}
    [ "$n" -lt "$end" ] || break
    p=$(( n - t < 50000 ? 50000 : n - t > 1000000 ? 1000000 : n - t ))
    p=$(( p > end - n ? end - n : p ))
    printf -v p '%d.%06d' $(( p / 1000000 )) $(( p % 1000000 ))
    read -r -t "$p" -u "$__nixvm_z" || :
  done
  return "$s"
}
"##;

/// The line sent once after the ready marker: defines the helpers when the
/// shell is bash ≥ 5 and they can be set up, and answers with the header of
/// reply 0, or [`STOCK_ANSWER`].
pub fn negotiation_line() -> String {
    format!(
        "case ${{BASH_VERSION-}} in [5-9].*|[1-9][0-9]*) if eval {} && __nixvm_w={WINDOW} && __nixvm_init; \
         then printf '\\001NIXVM 0 0 0\\n'; else echo nixvm-stock; fi ;; *) echo nixvm-stock ;; esac\n",
        shell_quote(HELPERS)
    )
}

/// The line that runs `command` as reply `seq`, ended by the watchdog after
/// `timeout` (none: unbounded, like the stock `timeout=None`).
pub fn command_line(seq: u64, command: &str, timeout: Option<Duration>) -> String {
    let t = timeout.map_or_else(|| "-".to_owned(), |t| format!("{:.3}", t.as_secs_f64().max(0.001)));
    format!("__nixvm_x {seq} {t} {}\n", shell_quote(command))
}

/// When a [`poll_command`] stops.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Until {
    /// The attempt exits with this status.
    Status(i32),
    /// The attempt exits non-zero.
    Failure,
    /// The attempt exits with this status and its output contains the text
    /// (a pre-filter: the host still judges the reply).
    StatusAndOutput(i32, String),
    /// `systemctl show` output: `ActiveState` is `active` or `failed`, or
    /// `inactive` while this command (`systemctl list-jobs`) says `No jobs`.
    UnitSettled(String),
}

/// A command (for [`command_line`]) that runs `attempt` in a fresh
/// `set -euo pipefail` subshell until `until` holds or `budget` has passed,
/// and ends with the last attempt's stdout and exit status: the host sees
/// what one probe would have returned, once the condition holds. No program
/// is started besides the attempt's own. The pause between attempts is as
/// long as the last attempt took, 50 ms to 1 s: a cheap probe (`test -e`, a
/// builtin here) sees its condition within about 50 ms, and an expensive one
/// (`systemctl show`, a few hundred milliseconds under TCG) takes at most
/// half of the guest's CPU from the boot it is waiting for.
pub fn poll_command(attempt: &str, until: &Until, budget: Duration) -> String {
    let (mode, code, arg) = match until {
        Until::Status(c) => ("s", *c, String::new()),
        Until::Failure => ("f", 0, String::new()),
        Until::StatusAndOutput(c, needle) => ("c", *c, needle.clone()),
        Until::UnitSettled(jobs) => ("u", 0, jobs.clone()),
    };
    format!(
        "__nixvm_poll {} {mode} {code} {} {}",
        budget.as_micros(),
        shell_quote(&arg),
        shell_quote(attempt)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Read, Write};
    use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
    use std::time::Instant;

    /// A local `bash --norc` fed like the backdoor (commands on stdin,
    /// replies on stdout, stderr captured).
    struct Guest {
        child: Child,
        stdin: ChildStdin,
        out: BufReader<ChildStdout>,
    }

    /// A bare `bash --norc` on pipes, as the backdoor's shell runs on hvc0.
    fn bare_bash() -> std::process::Child {
        Command::new("bash")
            .arg("--norc")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }

    fn guest() -> Option<Guest> {
        if !crate::driver::testing::require("bash", "runs the backdoor helpers") {
            return None;
        }
        let mut child = bare_bash();
        let mut stdin = child.stdin.take().unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        stdin.write_all(negotiation_line().as_bytes()).unwrap();
        let mut line = Vec::new();
        out.read_until(b'\n', &mut line).unwrap();
        assert_eq!(line, b"\x01NIXVM 0 0 0\n", "{}", String::from_utf8_lossy(&line));
        Some(Guest { child, stdin, out })
    }

    impl Guest {
        fn run(&mut self, seq: u64, command: &str, timeout: Option<Duration>) -> (i32, Vec<u8>) {
            self.stdin.write_all(command_line(seq, command, timeout).as_bytes()).unwrap();
            loop {
                let mut header = Vec::new();
                self.out.read_until(b'\n', &mut header).unwrap();
                let text = String::from_utf8(header).unwrap();
                let fields: Vec<&str> = text.trim_end().split(' ').collect();
                assert_eq!(fields[0], "\x01NIXVM", "{text:?}");
                assert_eq!(fields[1], seq.to_string());
                if fields[2] == "?" {
                    self.stdin.write_all(probe_ack(seq).as_bytes()).unwrap();
                    continue;
                }
                let len: usize = fields[3].parse().unwrap();
                let mut body = Vec::new();
                while body.len() < len {
                    let mut window = vec![0; (len - body.len()).min(WINDOW - body.len() % WINDOW)];
                    self.out.read_exact(&mut window).unwrap();
                    body.extend_from_slice(&window);
                    if body.len() < len {
                        self.stdin.write_all(window_ack(seq, body.len()).as_bytes()).unwrap();
                    }
                }
                return (fields[2].parse().unwrap(), body);
            }
        }
    }

    impl Drop for Guest {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    #[test]
    fn stock_semantics_through_the_helpers() {
        let Some(mut g) = guest() else { return };
        let t = Some(Duration::from_secs(5));
        assert_eq!(g.run(1, "echo hello; exit 3", t), (3, b"hello\n".to_vec()));
        // `set -euo pipefail`, a fresh environment per command.
        assert_eq!(g.run(2, "false | true; echo unreachable", t), (1, vec![]));
        assert_eq!(g.run(3, "echo $undefined_variable", t).0, 1);
        assert_eq!(g.run(4, "x=1; cd /; echo $x $#", t), (0, b"1 0\n".to_vec()));
        assert_eq!(
            g.run(5, "echo ${x-unset} $PWD", None).1,
            format!("unset {}\n", std::env::current_dir().unwrap().display()).into_bytes()
        );
        // Every byte value, NUL and invalid UTF-8 included, comes back exactly.
        let all: Vec<u8> = (0..=255u8).collect();
        let printf: String = all.iter().map(|b| format!("\\{b:03o}")).collect();
        assert_eq!(
            g.run(6, &format!("printf '{printf}'; printf '\\000'"), t).1,
            [all.clone(), vec![0]].concat()
        );
        assert_eq!(g.run(7, "printf 'é\\n\\n'", t).1, "é\n\n".as_bytes());
        // Syntax errors and `exit` behave as in `bash -c`.
        assert_eq!(g.run(8, "if then", t).0, 2);
        assert_eq!(g.run(9, "trap 'echo bye' EXIT; echo hi", t), (0, b"hi\nbye\n".to_vec()));
        // A background process holding stdout does not hold the reply.
        let started = Instant::now();
        assert_eq!(g.run(10, "sleep 30 & echo started", t), (0, b"started\n".to_vec()));
        assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
        // The deadline: 124, the output so far, the command and its children gone.
        let started = Instant::now();
        let (status, out) = g.run(
            11,
            "echo before; (sleep 31.41; echo never) & sleep 31.42",
            Some(Duration::from_millis(300)),
        );
        assert_eq!((status, out.as_slice()), (124, &b"before\n"[..]));
        assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
        std::thread::sleep(Duration::from_millis(100));
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            let zombie = stat.rsplit(") ").next().is_some_and(|s| s.starts_with('Z'));
            assert!(zombie || !String::from_utf8_lossy(&cmdline).contains("31.4"), "survivor: {cmdline:?}");
        }
        // SIGTERM ignored: SIGKILL a second later.
        let started = Instant::now();
        assert_eq!(g.run(12, "trap '' TERM; sleep 30", Some(Duration::from_millis(200))).0, 124);
        assert!(started.elapsed() < Duration::from_secs(4), "{:?}", started.elapsed());
        // The connection still works, and numbers its replies.
        assert_eq!(g.run(13, "echo still", t), (0, b"still\n".to_vec()));
        // Replies longer than a window, NULs on and next to its edges, come
        // back exactly, one acknowledged window at a time.
        let dir = tempfile::tempdir().unwrap();
        for (i, len) in [WINDOW + 1, 3 * WINDOW, 3 * WINDOW + 7].into_iter().enumerate() {
            let mut data: Vec<u8> = (0..len).map(|k| (k % 251) as u8 | 1).collect();
            for edge in [WINDOW - 1, WINDOW, 2 * WINDOW + 1, len - 1] {
                data[edge.min(len - 1)] = 0;
            }
            let file = dir.path().join("data");
            std::fs::write(&file, &data).unwrap();
            let r = g.run(14 + i as u64, &format!("cat {}", file.display()), t);
            assert!(r == (0, data), "reply {i} of {len} bytes differs");
        }
    }

    #[test]
    fn poll_command_stops_when_the_condition_holds() {
        let Some(mut g) = guest() else { return };
        let dir = tempfile::tempdir().unwrap();
        let n = dir.path().join("n");
        let t = Some(Duration::from_secs(10));
        // Counts its attempts; succeeds on the third; only its output is returned.
        let attempt = format!(
            "echo $(( $(cat {0} 2>/dev/null || echo 0) + 1 )) > {0}; echo \"try $(cat {0})\"; [ $(cat {0}) -ge 3 ]",
            n.display()
        );
        let cmd = poll_command(&attempt, &Until::Status(0), Duration::from_secs(5));
        assert_eq!(g.run(1, &cmd, t), (0, b"try 3\n".to_vec()));
        // Each attempt: no positional parameters, `set -e` in force.
        let cmd = poll_command("echo $#; false; echo no", &Until::Failure, Duration::from_secs(5));
        assert_eq!(g.run(9, &cmd, t), (1, b"0\n".to_vec()));
        // The budget ends it with the last attempt's status.
        let started = Instant::now();
        let cmd = poll_command("echo no; false", &Until::Status(0), Duration::from_millis(300));
        assert_eq!(g.run(2, &cmd, t), (1, b"no\n".to_vec()));
        assert!((0.3..3.0).contains(&started.elapsed().as_secs_f64()));
        assert_eq!(g.run(3, &poll_command("exit 4", &Until::Failure, Duration::from_secs(5)), t).0, 4);
        // `contains` pre-filter: status alone is not enough.
        std::fs::write(&n, "0").unwrap();
        let attempt = format!("c=$(( $(cat {0}) + 1 )); echo $c > {0}; echo \"v$c\"", n.display());
        let cmd = poll_command(&attempt, &Until::StatusAndOutput(0, "v4".into()), Duration::from_secs(5));
        assert_eq!(g.run(4, &cmd, t), (0, b"v4\n".to_vec()));
        // Units: activating keeps waiting, inactive without jobs stops.
        let started = Instant::now();
        let show = "printf 'Id=x\\nActiveState=activating\\n'";
        let cmd =
            poll_command(show, &Until::UnitSettled("echo 'No jobs'".into()), Duration::from_millis(300));
        assert_eq!(g.run(5, &cmd, t).1, b"Id=x\nActiveState=activating\n");
        assert!(started.elapsed() >= Duration::from_millis(300));
        let started = Instant::now();
        let show = "printf 'ActiveState=inactive\\n'";
        let cmd =
            poll_command(show, &Until::UnitSettled("echo 'No jobs running.'".into()), Duration::from_secs(5));
        assert_eq!(g.run(6, &cmd, t).0, 0);
        assert!(started.elapsed() < Duration::from_secs(3));
        let cmd = poll_command(
            "printf 'ActiveState=active'",
            &Until::UnitSettled("false".into()),
            Duration::from_secs(5),
        );
        assert_eq!(g.run(7, &cmd, t).0, 0);
    }

    #[test]
    fn old_or_incomplete_guests_answer_stock() {
        if !crate::driver::testing::require("bash", "runs the negotiation") {
            return;
        }
        for setup in ["BASH_VERSION=4.4.23", "mktemp() { return 1; }"] {
            let mut child = bare_bash();
            let mut stdin = child.stdin.take().unwrap();
            stdin.write_all(format!("{setup}\n{}", negotiation_line()).as_bytes()).unwrap();
            drop(stdin);
            let mut out = Vec::new();
            child.stdout.take().unwrap().read_to_end(&mut out).unwrap();
            child.wait().unwrap();
            assert_eq!(out, STOCK_ANSWER, "{setup}");
        }
    }
}
