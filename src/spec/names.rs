//! Which names and strings a description may contain, as pure predicates.
//!
//! They live in `spec` so that validation can refuse a value with an exact
//! span before anything is generated; codegen calls the same functions as a
//! defensive backstop (codegen depends on spec, never the reverse).

/// `[A-Za-z0-9_][A-Za-z0-9_.+-]*`: usable as `checks.<system>.<name>` and in
/// the derivation name `vm-test-run-<name>`.
pub fn valid_test_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '+' | '-'))
}

/// `[A-Za-z_][A-Za-z0-9_-]*`: a NixOS host name and, with `-` mangled, a
/// Python identifier in the stock driver's test script.
pub fn valid_node_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
}

/// Characters allowed in a unit name given to `waitForUnit`.
pub const UNIT_NAME_CHARS: &str = "letters, digits and `:_.@-`";

/// Whether a systemd unit name can be given to the stock driver's
/// `wait_for_unit`, which puts it between double quotes in a shell command
/// (and for user units inside `$'…'`): only the characters systemd allows in
/// unit names, without the backslash.
pub fn is_safe_unit_name(unit: &str) -> bool {
    !unit.is_empty() && unit.chars().all(is_unit_name_char)
}

fn is_unit_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, ':' | '_' | '.' | '@' | '-')
}

/// Characters allowed in a value the stock driver passes to a shell unquoted.
pub const SHELL_SAFE_CHARS: &str = "letters, digits and `_@%+=:,./-`";

/// Whether `s` is non-empty and needs no shell quoting at all (the set
/// Python's `shlex.quote` leaves alone).
pub fn is_shell_safe(s: &str) -> bool {
    !s.is_empty() && s.chars().all(is_shell_safe_char)
}

fn is_shell_safe_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '@' | '%' | '+' | '=' | ':' | ',' | '.' | '/' | '-')
}

/// The first character of `unit` that [`is_safe_unit_name`] refuses.
pub fn first_unsafe_unit_char(unit: &str) -> Option<char> {
    unit.chars().find(|&c| !is_unit_name_char(c))
}

/// The first character of `s` that [`is_shell_safe`] refuses.
pub fn first_unsafe_shell_char(s: &str) -> Option<char> {
    s.chars().find(|&c| !is_shell_safe_char(c))
}

/// Whether a shell command does nothing: empty or only whitespace. The
/// stock driver would run `sh -c ''`, which succeeds, so a `succeed = "";`
/// always passes and a `fail = "";` never does.
pub fn is_blank_command(command: &str) -> bool {
    command.trim().is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_and_node_names() {
        assert!(valid_test_name("health_2.0+x-y"));
        assert!(!valid_test_name("-x") && !valid_test_name("a b") && !valid_test_name(""));
        assert!(valid_node_name("web-1") && valid_node_name("_x"));
        assert!(!valid_node_name("1web") && !valid_node_name("a.b"));
    }

    #[test]
    fn unit_names() {
        assert!(is_safe_unit_name("syshc.service"));
        assert!(is_safe_unit_name("getty@tty1.service"));
        assert!(!is_safe_unit_name("a\"; rm -rf /; \".service"));
        assert!(!is_safe_unit_name("a b"));
        assert!(!is_safe_unit_name("dev-x\\x2dy.device"));
        assert!(!is_safe_unit_name(""));
        assert_eq!(first_unsafe_unit_char("a b"), Some(' '));
        assert_eq!(first_unsafe_unit_char("ok.service"), None);
    }

    #[test]
    fn shell_safe_strings() {
        assert!(is_shell_safe("/var/log/x.log"));
        assert!(is_shell_safe("alice"));
        assert!(!is_shell_safe(""));
        assert!(!is_shell_safe("a b"));
        assert!(!is_shell_safe("$(id)"));
        assert_eq!(first_unsafe_shell_char("/tmp/a;b"), Some(';'));
    }

    #[test]
    fn blank_commands() {
        assert!(is_blank_command(""));
        assert!(is_blank_command(" \n\t"));
        assert!(!is_blank_command("true"));
    }
}
