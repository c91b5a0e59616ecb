//! POSIX shell quoting, as the stock driver does it.

use crate::spec::names::is_shell_safe;

/// Quotes `s` for a POSIX shell, like Python's `shlex.quote` (which the
/// stock driver uses): unchanged when it only has `[A-Za-z0-9_@%+=:,./-]`,
/// `''` when empty, otherwise single-quoted with each `'` written `'"'"'`.
pub fn shell_quote(s: &str) -> String {
    if s.is_empty() {
        return "''".to_string();
    }
    if is_shell_safe(s) {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if c == '\'' {
            out.push_str("'\"'\"'");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}
