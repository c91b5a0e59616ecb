//! Capture names (`capture = "TOKEN";`): shell variable names that every
//! later command sees, so not one the shell or the driver gives a meaning.
//! How values travel is in [`crate::guest::captures`].

/// `[A-Za-z_][A-Za-z0-9_]*`: a shell variable name (also a safe file name).
/// Bounded in length so a name is never a path problem.
pub fn valid_capture_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= MAX_NAME_LEN
        && chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Longest capture name.
pub const MAX_NAME_LEN: usize = 64;

/// Names the shell, the login environment or the driver give a meaning:
/// overriding them would change how every later command runs.
pub const RESERVED_NAMES: &[&str] = &[
    "PATH",
    "HOME",
    "IFS",
    "PWD",
    "OLDPWD",
    "SHELL",
    "USER",
    "LOGNAME",
    "TERM",
    "PS1",
    "PS2",
    "PS3",
    "PS4",
    "LANG",
    "LANGUAGE",
    "TZ",
    "TMPDIR",
    "SHLVL",
    "UID",
    "EUID",
    "PPID",
    "GROUPS",
    "RANDOM",
    "SRANDOM",
    "SECONDS",
    "LINENO",
    "REPLY",
    "OPTARG",
    "OPTIND",
    "OPTERR",
    "PIPESTATUS",
    "FUNCNAME",
    "DIRSTACK",
    "HOSTNAME",
    "HOSTTYPE",
    "OSTYPE",
    "MACHTYPE",
    "EPOCHREALTIME",
    "EPOCHSECONDS",
    "CDPATH",
    "ENV",
    "GLOBIGNORE",
    "EXECIGNORE",
    "FIGNORE",
    "POSIXLY_CORRECT",
    "PROMPT_COMMAND",
    "TMOUT",
    "MAIL",
    "MAILPATH",
    "MAILCHECK",
    "COLUMNS",
    "LINES",
    "INPUTRC",
    "IGNOREEOF",
    "XDG_RUNTIME_DIR",
    "NIX_PATH",
    "LOCALE_ARCHIVE",
    "TZDIR",
    "_",
];

/// Prefixes of reserved names: locale (`LC_ALL`), bash's own (`BASH_ENV`),
/// history, completion, the dynamic loader (`LD_PRELOAD`), systemd's
/// client settings, this project's (`NIXVM_`), and the `__` names the
/// driver's polling loop uses.
pub const RESERVED_PREFIXES: &[&str] =
    &["LC_", "BASH", "HIST", "COMP_", "LD_", "SYSTEMD_", "NIXVM_", "NIX_", "__"];

/// Why `name` is reserved, or `None` when it is free to capture.
pub fn reserved(name: &str) -> Option<&'static str> {
    if RESERVED_NAMES.contains(&name) {
        return Some("the shell or the login environment uses it");
    }
    RESERVED_PREFIXES.iter().find(|p| name.starts_with(**p)).map(|p| match *p {
        "NIXVM_" | "__" => "nixvm-gen and its driver use names like it",
        "LD_" => "the dynamic loader reads names like it",
        _ => "the shell or the login environment uses names like it",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_shell_identifiers() {
        for ok in ["TOKEN", "_x", "a1", "server_key"] {
            assert!(valid_capture_name(ok), "{ok}");
        }
        for bad in ["", "1a", "a-b", "a b", "é", "$X", "a.b", &"x".repeat(65)] {
            assert!(!valid_capture_name(bad), "{bad}");
        }
    }

    #[test]
    fn reserved_names_and_prefixes() {
        for r in ["PATH", "IFS", "LC_ALL", "BASH_ENV", "NIXVM_X", "__s", "LD_PRELOAD", "_"] {
            assert!(reserved(r).is_some(), "{r}");
        }
        for free in ["TOKEN", "path", "Home", "LCX", "_x"] {
            assert!(reserved(free).is_none(), "{free}");
        }
    }
}
