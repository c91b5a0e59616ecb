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

/// The variables a shell command reads as `$NAME` or `${NAME…}` (also
/// `${#NAME}`), in order, with the byte offset of their `$`: outside single
/// quotes and not escaped by a backslash. Names the command itself may set
/// (the name also written as a bare word: `NAME=…`, `read NAME`,
/// `for NAME in`) are left out. A lexer for references, not a shell parser:
/// it never decides what runs.
pub fn shell_references(command: &str) -> Vec<(&str, usize)> {
    let bytes = command.as_bytes();
    // Only a `$` references; most commands have none (the scan below
    // collects every bare word).
    if !bytes.contains(&b'$') {
        return Vec::new();
    }
    let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let name_at = |start: usize| {
        let first_ok = bytes.get(start).is_some_and(|b| b.is_ascii_alphabetic() || *b == b'_');
        let end =
            if first_ok { start + bytes[start..].iter().take_while(|b| ident(**b)).count() } else { start };
        &command[start..end]
    };
    let mut refs: Vec<(&str, usize)> = Vec::new();
    let mut bare: Vec<&str> = Vec::new();
    let (mut i, mut in_double) = (0, false);
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'\'' if !in_double => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'\'' {
                    i += 1;
                }
                i += 1;
            }
            b'"' => {
                in_double = !in_double;
                i += 1;
            }
            b'$' => {
                let braced = bytes.get(i + 1) == Some(&b'{');
                let start = match (braced, bytes.get(i + 2)) {
                    (true, Some(b'#')) => i + 3,
                    (true, _) => i + 2,
                    (false, _) => i + 1,
                };
                let name = name_at(start);
                if !name.is_empty() {
                    refs.push((name, i));
                }
                i = start + name.len().max(usize::from(name.is_empty() && !braced));
            }
            b if ident(b) => {
                let name = name_at(i);
                let len = name.len().max(1);
                if !name.is_empty() && (i == 0 || !ident(bytes[i - 1])) {
                    bare.push(name);
                }
                i += len;
            }
            _ => i += 1,
        }
    }
    refs.retain(|(name, _)| !bare.contains(name));
    refs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_references_outside_single_quotes() {
        fn names(c: &str) -> Vec<&str> {
            shell_references(c).into_iter().map(|(n, _)| n).collect()
        }
        assert_eq!(names("echo $TOKEN ${A} \"$B\" ${#C} ${D:-x}"), ["TOKEN", "A", "B", "C", "D"]);
        assert_eq!(shell_references("x $TOKEN"), [("TOKEN", 2)]);
        assert_eq!(names("echo '$A' \\$B \"it's $C\" $1 $$ $? ${@}"), ["C"]);
        assert_eq!(names("TOKEN=1; echo $TOKEN; read -r X; echo $X $Y"), ["Y"]);
        assert_eq!(names("for T in a b; do echo $T; done; echo $Z"), ["Z"]);
        assert_eq!(names("echo ${"), Vec::<&str>::new());
        assert_eq!(names("echo $(cat $F) `echo $G`"), ["F", "G"]);
        // Bytes that are not ASCII never split a name.
        assert_eq!(names("é$Aé $B"), ["A", "B"]);
    }

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
