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

/// Attribute names Nix and nixpkgs give a meaning in an attribute set of
/// derivations: a check called `outPath` or `__functor` would change what
/// `checks.<system>` is, `type` and `recurseForDerivations` what
/// `nix flake check` and Hydra walk into.
pub const RESERVED_CHECK_NAMES: &[&str] =
    &["__functor", "outPath", "type", "recurseForDerivations", "drvPath"];

/// Whether `name` is one of [`RESERVED_CHECK_NAMES`].
pub fn is_reserved_check_name(name: &str) -> bool {
    RESERVED_CHECK_NAMES.contains(&name)
}

/// `[A-Za-z_][A-Za-z0-9_-]*`: a NixOS host name and, with `-` mangled, a
/// Python identifier in the stock driver's test script.
pub fn valid_node_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
}

/// The stock driver's name for a node in the script: first character not in
/// `[A-Za-z_]` becomes `_`, any other character not in `[A-Za-z0-9_]` too
/// (`nixos/lib/testing/driver.nix`, `pythonizeName`).
pub fn pythonize(name: &str) -> String {
    name.chars()
        .enumerate()
        .map(|(i, c)| {
            let ok = c.is_ascii_alphabetic() || c == '_' || (i > 0 && c.is_ascii_digit());
            if ok { c } else { '_' }
        })
        .collect()
}

/// Python's keywords (3.11; soft keywords such as `match` and `type` are
/// usable as names): a node called `class` would be a syntax error.
const PYTHON_KEYWORDS: &[&str] = &[
    "False", "None", "True", "and", "as", "assert", "async", "await", "break", "class", "continue", "def",
    "del", "elif", "else", "except", "finally", "for", "from", "global", "if", "import", "in", "is",
    "lambda", "nonlocal", "not", "or", "pass", "raise", "return", "try", "while", "with", "yield",
];

/// Globals of the stock driver's testScript besides the nodes (reference
/// §4.9, and the names `nixos/lib/test-script-prepend.py` declares or
/// imports for the type check). A node with one of these names shadows it,
/// or makes the driver build's type check fail on a redefinition.
pub const DRIVER_GLOBALS: &[&str] = &[
    "start_all",
    "join_all",
    "test_script",
    "run_tests",
    "machines",
    "machines_qemu",
    "machines_nspawn",
    "vlans",
    "driver",
    "log",
    "os",
    "create_machine",
    "subtest",
    "retry",
    "serial_stdout_on",
    "serial_stdout_off",
    "polling_condition",
    "t",
    "debug",
    "dump_machine_ssh",
    "BaseMachine",
    "QemuMachine",
    "NspawnMachine",
    "Machine",
    "Driver",
    "VLan",
    "Logger",
    "Path",
    "Callable",
    "Iterator",
    "ContextManager",
    "Optional",
    "List",
    "Dict",
    "Any",
    "Union",
    "Protocol",
    "RetryProtocol",
    "PollingConditionProtocol",
    "CreateMachineProtocol",
];

/// Why a pythonized node name cannot be a variable of the stock driver's
/// testScript, if it cannot.
pub fn reserved_python_name(pythonized: &str) -> Option<&'static str> {
    if PYTHON_KEYWORDS.contains(&pythonized) {
        Some("a Python keyword")
    } else if DRIVER_GLOBALS.contains(&pythonized) {
        Some("a name the test driver already defines")
    } else if pythonized
        .strip_prefix("vlan")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    {
        Some("the test driver's name for a VLAN")
    } else {
        None
    }
}

/// Characters allowed in a unit name given to `waitForUnit`.
pub const UNIT_NAME_CHARS: &str = "letters, digits and `:_.@-`";
/// [`is_safe_unit_name`] as a POSIX extended regular expression, for the
/// evaluation-time check of computed unit names (`builtins.match`).
pub const UNIT_NAME_PATTERN: &str = "[A-Za-z0-9:_.@][A-Za-z0-9:_.@-]*";

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

/// The values of a unit's `ActiveState` (systemd's `unit_active_state`
/// names: `man systemd.unit`, "ActiveState"), for `requireUnitState`.
pub const ACTIVE_STATES: &[&str] =
    &["active", "reloading", "inactive", "failed", "activating", "deactivating", "maintenance", "refreshing"];

/// The Nix store, with the slash that follows it.
pub const STORE_DIR: &str = "/nix/store/";

/// A store path without `.` or `..` components, as a POSIX extended
/// regular expression for the evaluation-time check of a computed
/// `copyFromHost` source (`builtins.match`): the host side of a test runs in
/// the build sandbox, where only store paths exist.
pub const STORE_PATH_PATTERN: &str =
    "/nix/store/[0-9a-z]{32}-[^/]+(/([^/.][^/]*|[.][^/.][^/]*|[.][.][^/]+))*";

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
    fn python_names() {
        assert_eq!(pythonize("machine"), "machine");
        assert_eq!(pythonize("web-1"), "web_1");
        assert_eq!(pythonize("1st"), "_st");
        assert_eq!(pythonize("a.b c"), "a_b_c");
        assert_eq!(reserved_python_name("class"), Some("a Python keyword"));
        assert_eq!(reserved_python_name("start_all"), Some("a name the test driver already defines"));
        assert_eq!(reserved_python_name("vlan2"), Some("the test driver's name for a VLAN"));
        for ok in ["machine", "server", "vlan", "vlanx", "match", "type", "re", "out"] {
            assert_eq!(reserved_python_name(ok), None, "{ok}");
        }
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
