//! Keys a description may press (`sendKeys`) or type (`sendChars`): QEMU
//! monitor `sendkey` names, and the stock driver's table from characters to
//! those names.
//!
//! Read from NixOS/nixpkgs `nixos/lib/test-driver/src/test_driver/machine/__init__.py`
//! (019697db058b6738eda0cb2cdcc9f5c014c914cb): `send_key(key)` sends
//! `sendkey CHAR_TO_KEY.get(key, key)`; `send_chars(chars)` does that for
//! each character, 0.01 s apart. The stock driver ignores what the monitor
//! answers, so a character it cannot map (a tab, `é`) is silently not typed;
//! here such input is refused before the test runs.

/// The stock `CHAR_TO_KEY` table: characters that are not QEMU key names
/// themselves. Lower-case letters and digits are key names as they are.
const CHAR_TO_KEY: &[(char, &str)] = &[
    ('A', "shift-a"),
    ('B', "shift-b"),
    ('C', "shift-c"),
    ('D', "shift-d"),
    ('E', "shift-e"),
    ('F', "shift-f"),
    ('G', "shift-g"),
    ('H', "shift-h"),
    ('I', "shift-i"),
    ('J', "shift-j"),
    ('K', "shift-k"),
    ('L', "shift-l"),
    ('M', "shift-m"),
    ('N', "shift-n"),
    ('O', "shift-o"),
    ('P', "shift-p"),
    ('Q', "shift-q"),
    ('R', "shift-r"),
    ('S', "shift-s"),
    ('T', "shift-t"),
    ('U', "shift-u"),
    ('V', "shift-v"),
    ('W', "shift-w"),
    ('X', "shift-x"),
    ('Y', "shift-y"),
    ('Z', "shift-z"),
    ('-', "0x0C"),
    ('_', "shift-0x0C"),
    ('=', "0x0D"),
    ('+', "shift-0x0D"),
    ('[', "0x1A"),
    ('{', "shift-0x1A"),
    (']', "0x1B"),
    ('}', "shift-0x1B"),
    (';', "0x27"),
    (':', "shift-0x27"),
    ('\'', "0x28"),
    ('"', "shift-0x28"),
    ('`', "0x29"),
    ('~', "shift-0x29"),
    ('\\', "0x2B"),
    ('|', "shift-0x2B"),
    (',', "0x33"),
    ('<', "shift-0x33"),
    ('.', "0x34"),
    ('>', "shift-0x34"),
    ('/', "0x35"),
    ('?', "shift-0x35"),
    (' ', "spc"),
    ('\n', "ret"),
    ('!', "shift-0x02"),
    ('@', "shift-0x03"),
    ('#', "shift-0x04"),
    ('$', "shift-0x05"),
    ('%', "shift-0x06"),
    ('^', "shift-0x07"),
    ('&', "shift-0x08"),
    ('*', "shift-0x09"),
    ('(', "shift-0x0A"),
    (')', "shift-0x0B"),
];

/// QEMU's key names (`QKeyCode` in qapi/ui.json, as HMP `sendkey` takes
/// them; QEMU 7.2 here). Besides these, `sendkey` takes raw scancodes
/// written `0x…`.
pub const QEMU_KEYS: &[&str] = &[
    "shift",
    "shift_r",
    "alt",
    "alt_r",
    "ctrl",
    "ctrl_r",
    "menu",
    "esc",
    "1",
    "2",
    "3",
    "4",
    "5",
    "6",
    "7",
    "8",
    "9",
    "0",
    "minus",
    "equal",
    "backspace",
    "tab",
    "q",
    "w",
    "e",
    "r",
    "t",
    "y",
    "u",
    "i",
    "o",
    "p",
    "bracket_left",
    "bracket_right",
    "ret",
    "a",
    "s",
    "d",
    "f",
    "g",
    "h",
    "j",
    "k",
    "l",
    "semicolon",
    "apostrophe",
    "grave_accent",
    "backslash",
    "z",
    "x",
    "c",
    "v",
    "b",
    "n",
    "m",
    "comma",
    "dot",
    "slash",
    "asterisk",
    "spc",
    "caps_lock",
    "f1",
    "f2",
    "f3",
    "f4",
    "f5",
    "f6",
    "f7",
    "f8",
    "f9",
    "f10",
    "num_lock",
    "scroll_lock",
    "kp_divide",
    "kp_multiply",
    "kp_subtract",
    "kp_add",
    "kp_enter",
    "kp_decimal",
    "sysrq",
    "kp_0",
    "kp_1",
    "kp_2",
    "kp_3",
    "kp_4",
    "kp_5",
    "kp_6",
    "kp_7",
    "kp_8",
    "kp_9",
    "less",
    "f11",
    "f12",
    "print",
    "home",
    "pgup",
    "pgdn",
    "end",
    "left",
    "up",
    "down",
    "right",
    "insert",
    "delete",
    "stop",
    "again",
    "props",
    "undo",
    "front",
    "copy",
    "open",
    "paste",
    "find",
    "cut",
    "lf",
    "help",
    "meta_l",
    "meta_r",
    "compose",
    "pause",
    "ro",
    "hiragana",
    "henkan",
    "yen",
    "muhenkan",
    "katakanahiragana",
    "kp_comma",
    "kp_equals",
    "power",
    "sleep",
    "wake",
    "audionext",
    "audioprev",
    "audiostop",
    "audioplay",
    "audiomute",
    "volumeup",
    "volumedown",
    "mediaselect",
    "mail",
    "calculator",
    "computer",
    "ac_home",
    "ac_back",
    "ac_forward",
    "ac_refresh",
    "ac_bookmarks",
    "lang1",
    "lang2",
];

/// At most this many keys pressed at once in one `sendkey` (QEMU's limit).
const MAX_KEYS_AT_ONCE: usize = 16;

/// The `sendkey` argument the stock driver sends for `key`: its
/// `CHAR_TO_KEY` entry, or `key` itself.
pub fn monitor_key(key: &str) -> &str {
    let mut chars = key.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) => CHAR_TO_KEY.iter().find(|(k, _)| *k == c).map_or(key, |(_, name)| name),
        _ => key,
    }
}

/// The `sendkey` argument that types `c`, `None` when neither the stock
/// table nor QEMU's names have it.
pub fn char_key(c: char) -> Option<&'static str> {
    if let Some((_, name)) = CHAR_TO_KEY.iter().find(|(k, _)| *k == c) {
        return Some(name);
    }
    QEMU_KEYS.iter().find(|name| name.len() == 1 && name.starts_with(c)).copied()
}

/// Whether `sendChars` can type every character of `text`.
pub fn first_untypable(text: &str) -> Option<char> {
    text.chars().find(|&c| char_key(c).is_none())
}

/// The POSIX ERE (for `builtins.match`) of text `sendChars` can type: the
/// printable ASCII characters and newline, exactly the characters
/// [`char_key`] knows.
pub const TYPABLE_PATTERN: &str = "[ -~\n]*";

/// Checks a `sendKeys` key: a character of the stock table, or QEMU key
/// names (or `0x…` scancodes) joined by `-` for keys pressed together.
/// The error says what is wrong.
pub fn check_key(key: &str) -> Result<(), String> {
    let mapped = monitor_key(key);
    if mapped != key {
        return Ok(());
    }
    if key.is_empty() {
        return Err("the key is empty".to_owned());
    }
    let parts: Vec<&str> = key.split('-').collect();
    if parts.len() > MAX_KEYS_AT_ONCE {
        return Err(format!("`{key}` presses more than {MAX_KEYS_AT_ONCE} keys at once"));
    }
    for part in parts {
        if part.is_empty() {
            return Err(format!(
                "`{key}` has an empty key name (keys pressed together are joined by one `-`)"
            ));
        }
        if !QEMU_KEYS.contains(&part) && !is_scancode(part) {
            return Err(format!("`{part}` is not a QEMU key name"));
        }
    }
    Ok(())
}

/// Whether `key` is ctrl-alt-delete (in any order, either ctrl or alt),
/// which reboots a Linux guest: the stock `reboot()` sends exactly that.
pub fn is_reboot_key(key: &str) -> bool {
    let mut parts: Vec<&str> = key
        .split('-')
        .map(|p| match p {
            "ctrl_r" => "ctrl",
            "alt_r" => "alt",
            other => other,
        })
        .collect();
    parts.sort_unstable();
    parts == ["alt", "ctrl", "delete"]
}

/// `0x` and one to four hex digits, as QEMU's `sendkey` parses raw keycodes.
fn is_scancode(part: &str) -> bool {
    part.strip_prefix("0x")
        .is_some_and(|hex| (1..=4).contains(&hex.len()) && hex.chars().all(|c| c.is_ascii_hexdigit()))
}

/// The QEMU key name closest to `name`, for "did you mean" hints.
pub fn closest_key(name: &str) -> Option<&'static str> {
    let lower = name.to_ascii_lowercase();
    let aliases: &[(&str, &str)] = &[
        ("enter", "ret"),
        ("return", "ret"),
        ("space", "spc"),
        ("escape", "esc"),
        ("control", "ctrl"),
        ("del", "delete"),
        ("pageup", "pgup"),
        ("pagedown", "pgdn"),
        ("super", "meta_l"),
        ("win", "meta_l"),
    ];
    if let Some((_, to)) = aliases.iter().find(|(from, _)| *from == lower) {
        return Some(to);
    }
    if QEMU_KEYS.contains(&lower.as_str()) {
        return QEMU_KEYS.iter().find(|k| **k == lower).copied();
    }
    QEMU_KEYS
        .iter()
        .map(|k| (strsim::levenshtein(k, &lower), *k))
        .filter(|(d, k)| *d <= 2 && k.len() > 2)
        .min()
        .map(|(_, k)| k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_printable_ascii_character_and_newline_is_typable() {
        for c in (' '..='~').chain(['\n']) {
            assert!(char_key(c).is_some(), "{c:?}");
        }
        for c in ['\t', 'é', '\r', '\u{7f}'] {
            assert_eq!(char_key(c), None, "{c:?}");
        }
    }

    #[test]
    fn the_stock_table_maps_single_characters_only() {
        assert_eq!(monitor_key("A"), "shift-a");
        assert_eq!(monitor_key("\n"), "ret");
        assert_eq!(monitor_key("a"), "a");
        assert_eq!(monitor_key("ctrl-alt-delete"), "ctrl-alt-delete");
    }

    #[test]
    fn key_combinations_are_qemu_names() {
        assert_eq!(check_key("ctrl-alt-delete"), Ok(()));
        assert_eq!(check_key("alt-f2"), Ok(()));
        assert_eq!(check_key("shift-0x0C"), Ok(()));
        assert_eq!(check_key("?"), Ok(()));
        assert!(check_key("enter").unwrap_err().contains("`enter` is not a QEMU key name"));
        assert!(check_key("ctrl--c").is_err());
        assert!(check_key("").is_err());
        assert!(check_key("0x12345").is_err());
        assert_eq!(closest_key("enter"), Some("ret"));
        assert_eq!(closest_key("backspce"), Some("backspace"));
        assert!(is_reboot_key("ctrl-alt-delete") && is_reboot_key("alt-ctrl_r-delete"));
        assert!(!is_reboot_key("ctrl-alt-f1") && !is_reboot_key("ctrl-delete"));
    }
}
