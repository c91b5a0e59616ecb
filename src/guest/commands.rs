//! Guest shell commands that both backends run for a step, so the generated
//! Python testScript and nixvm-driver execute byte-identical commands in the VM.

use super::shell_quote;

/// Separator printed by curl between the response body and the status code.
/// A newline, so the status is always the last line of the output.
const HTTP_STATUS_SEPARATOR: char = '\n';

/// The command an `http` step runs inside the node: prints the response body
/// followed by a newline and the HTTP status code (`000` when no response
/// was received). Redirects are followed; curl's own errors go to stderr and
/// make it exit non-zero, so a refused connection fails the command while an
/// HTTP error status does not (the step compares the status itself).
pub fn http_command(url: &str) -> String {
    format!("{}{}", http_command_prefix(), shell_quote(url))
}

/// [`http_command`] up to the quoted URL (the generated script appends a
/// URL that Nix computes).
pub fn http_command_prefix() -> String {
    format!("curl --silent --show-error --location --write-out {} --url ", shell_quote("\\n%{http_code}"))
}

/// Splits the output of [`http_command`] into `(body, status)`. `None` when
/// there is no separator (the command was not the one above).
pub fn split_http_output(output: &str) -> Option<(&str, &str)> {
    output.rsplit_once(HTTP_STATUS_SEPARATOR)
}

/// The probe behind `waitForOpenPort` / `waitForClosedPort`: exits 0 when
/// something listens on `addr:port`. The stock driver runs `nc -z <addr>
/// <port>` with `addr` unquoted, so the generated script hands it the
/// already-quoted address ([`probe_addr`]) to get exactly this command.
pub fn port_probe_command(port: u16, addr: Option<&str>) -> String {
    format!("nc -z {} {port}", probe_addr(addr))
}

/// The address argument of the port probe, shell-quoted (`localhost` when
/// the step names none, as in the stock driver).
pub fn probe_addr(addr: Option<&str>) -> String {
    shell_quote(addr.unwrap_or(DEFAULT_PROBE_ADDR))
}

/// Address probed when a port step names none.
pub const DEFAULT_PROBE_ADDR: &str = "localhost";

/// The probe behind `waitForOpenUnixSocket`: the stock
/// `wait_for_open_unix_socket`'s `nc -z -U <path>` (`-uU` for a datagram
/// socket), the path unquoted there and checked to need no quoting here.
pub fn unix_socket_probe_command(path: &str, datagram: bool) -> String {
    format!("nc -z {} {path}", if datagram { "-uU" } else { "-U" })
}

/// The probe behind `waitForFile` (the stock driver runs `test -e <path>`
/// unquoted; the script passes the quoted path, see [`port_probe_command`]).
pub fn file_probe_command(path: &str) -> String {
    format!("test -e {}", shell_quote(path))
}

// The display and terminal commands below are the stock driver's, byte for
// byte (NixOS/nixpkgs nixos/lib/test-driver/src/test_driver/machine/__init__.py
// at 019697db058b6738eda0cb2cdcc9f5c014c914cb): the generated Python calls
// the stock methods, which run exactly these.

/// What virtual console `tty` shows (`get_tty_text`): the screen memory
/// `/dev/vcs<N>` folded at the console's width. Starts `stty`, `awk` and
/// `fold` in the guest (three programs besides the shell).
pub fn tty_text_command(tty: u8) -> String {
    format!("fold -w$(stty -F /dev/tty{tty} size | awk '{{print $2}}') /dev/vcs{tty}")
}

/// `dump_tty_contents`: the console's text, 80 columns wide, into the
/// journal. The stock driver ignores its exit status.
pub fn dump_tty_command(tty: u8) -> String {
    format!("fold -w 80 /dev/vcs{tty} | systemd-cat")
}

/// The stock `systemctl(q, user)`'s command (NixOS/nixpkgs
/// nixos/lib/test-driver/src/test_driver/machine/__init__.py at
/// 019697db058b6738eda0cb2cdcc9f5c014c914cb, `BaseMachine.systemctl`):
/// `systemctl <q>`, or for a user's manager a login shell of that user
/// (`su -l`, which starts from a clean environment, so captures do not
/// reach it) with `'` in `q` written `\'` inside bash's `$'…'`.
pub fn systemctl_command(query: &str, user: Option<&str>) -> String {
    match user {
        None => format!("systemctl {query}"),
        Some(u) => {
            let q = query.replace('\'', "\\'");
            format!("su -l {u} --shell /bin/sh -c $'XDG_RUNTIME_DIR=/run/user/`id -u` systemctl --user {q}'")
        }
    }
}

/// The query of the stock `start_job(jobname)` (`start <jobname>`, unquoted;
/// unit names are checked to need no quoting).
pub fn start_job_query(unit: &str) -> String {
    format!("start {unit}")
}

/// The query of the stock `stop_job(jobname)`.
pub fn stop_job_query(unit: &str) -> String {
    format!("stop {unit}")
}

/// `wait_for_x`'s two probes (the stock driver runs them as two commands,
/// the second only when the first succeeds): systemd reached the graphical
/// target, and the X server's socket exists.
pub const X_STARTED_COMMAND: &str =
    "journalctl -b SYSLOG_IDENTIFIER=systemd | grep \"Reached target Current graphical\"";
/// The second probe of `wait_for_x`.
pub const X_SOCKET_COMMAND: &str = "[ -e /tmp/.X11-unix/X0 ]";

/// `get_window_names`: one X window name per output line.
pub const WINDOW_NAMES_COMMAND: &str =
    r#"xwininfo -root -tree | sed 's/.*0x[0-9a-f]* \"\([^\"]*\)\".*/\1/; t; d'"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_command_quotes_the_url() {
        assert_eq!(
            http_command("http://localhost:3000/"),
            "curl --silent --show-error --location --write-out '\\n%{http_code}' --url http://localhost:3000/"
        );
        assert_eq!(
            http_command("http://x/?a=1&b='2'"),
            "curl --silent --show-error --location --write-out '\\n%{http_code}' --url 'http://x/?a=1&b='\"'\"'2'\"'\"''"
        );
    }

    #[test]
    fn http_output_split_takes_the_last_line() {
        assert_eq!(split_http_output("Healthy\nyes\n200"), Some(("Healthy\nyes", "200")));
        assert_eq!(split_http_output("\n404"), Some(("", "404")));
        assert_eq!(split_http_output("404"), None);
    }

    #[test]
    fn probes_quote_their_arguments() {
        assert_eq!(port_probe_command(3000, None), "nc -z localhost 3000");
        assert_eq!(port_probe_command(80, Some("a b")), "nc -z 'a b' 80");
        assert_eq!(file_probe_command("/run/x y"), "test -e '/run/x y'");
    }

    #[test]
    fn systemctl_commands_are_the_stock_ones() {
        assert_eq!(systemctl_command("list-jobs --no-pager", None), "systemctl list-jobs --no-pager");
        assert_eq!(
            systemctl_command("show 'a b'", Some("alice")),
            "su -l alice --shell /bin/sh -c $'XDG_RUNTIME_DIR=/run/user/`id -u` systemctl --user show \\'a b\\''"
        );
        assert_eq!(systemctl_command(&start_job_query("x.service"), None), "systemctl start x.service");
        assert_eq!(systemctl_command(&stop_job_query("x.service"), None), "systemctl stop x.service");
    }

    #[test]
    fn terminal_commands_are_the_stock_ones() {
        assert_eq!(tty_text_command(2), "fold -w$(stty -F /dev/tty2 size | awk '{print $2}') /dev/vcs2");
        assert_eq!(dump_tty_command(1), "fold -w 80 /dev/vcs1 | systemd-cat");
        // The Python source is r"…\"\(…" with \" inside: a backslash before each quote.
        assert_eq!(
            WINDOW_NAMES_COMMAND,
            "xwininfo -root -tree | sed 's/.*0x[0-9a-f]* \\\"\\([^\\\"]*\\)\\\".*/\\1/; t; d'"
        );
    }
}
