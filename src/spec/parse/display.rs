//! The display and the terminal: keys, virtual consoles, OCR and X11 waits.
//! Key names and typable characters are checked here (QEMU's `sendkey`
//! names, the stock driver's character table: [`crate::spec::keys`]).

use super::convert::{Conv, NodeRef, Sibling, Ty, key_name};
use crate::diagnostic::{Diagnostic, Span};
use crate::spec::computed::{ComputedType, Num};
use crate::spec::value::{Entry, Kind, Value};
use crate::spec::{Action, keys};

/// The action keys of this family (`screenshot` is in `files`).
pub(super) const DISPLAY_KEYS: &[&str] = &[
    "sendKeys",
    "sendChars",
    "waitUntilTtyMatches",
    "dumpTtyContents",
    "waitForText",
    "waitForX",
    "waitForWindow",
];

/// Linux has virtual consoles 1 to 63 (`MAX_NR_CONSOLES`).
const MAX_TTY: i64 = 63;

impl Conv<'_> {
    pub(super) fn display_action<'e>(
        &mut self,
        e: &Entry,
        sibling: Sibling<'_, 'e>,
    ) -> Option<(Action, NodeRef)> {
        let v = &e.value;
        let what = key_name("", &e.key);
        let action = match e.key.as_str() {
            "sendKeys" => Action::SendKeys { keys: self.keys(v, &what)? },
            "sendChars" => {
                let chars = self.text(v, &what, Some(keys::TYPABLE_PATTERN))?;
                self.typable(&chars, v.span);
                Action::SendChars { chars }
            }
            "waitUntilTtyMatches" => {
                let regex = self.text(v, &what, None);
                if let Some(regex) = &regex {
                    self.regex(regex, v.span);
                }
                let tty = match sibling("tty") {
                    Some(t) => self.tty(&t.value, "`tty`"),
                    None => {
                        self.diags.push(
                            Diagnostic::error(
                                "missing_field",
                                Some(e.key_span),
                                "`waitUntilTtyMatches` has no `tty`",
                            )
                            .with_label("which virtual console?")
                            .with_hint("add `tty = 1;` (the number N of /dev/ttyN) next to it"),
                        );
                        None
                    }
                };
                Action::WaitUntilTtyMatches { tty: tty?, regex: regex? }
            }
            "dumpTtyContents" => Action::DumpTtyContents { tty: self.tty(v, &what)? },
            "waitForText" | "waitForWindow" => {
                let regex = self.text(v, &what, None)?;
                self.regex(&regex, v.span);
                if e.key == "waitForText" {
                    Action::WaitForText { regex }
                } else {
                    Action::WaitForWindow { regex }
                }
            }
            "waitForX" => return self.wait_for_x(e),
            _ => return None,
        };
        Some((action, None))
    }

    /// `sendKeys = "ctrl-alt-delete";` or a list of keys pressed in turn.
    fn keys(&mut self, v: &Value, what: &str) -> Option<Vec<String>> {
        let items: Vec<&Value> = match &v.kind {
            Kind::List(items) => {
                if items.is_empty() {
                    self.diags.push(
                        Diagnostic::error("empty_keys", Some(v.span), format!("{what} has no keys"))
                            .with_label("empty list")
                            .with_hint(
                                "list at least one key, e.g. `[ \"ctrl-alt-f2\" ]`, or remove the step",
                            ),
                    );
                    return None;
                }
                items.iter().collect()
            }
            _ => vec![v],
        };
        let mut keys = Vec::new();
        let mut ok = true;
        for item in items {
            // Key names reach the monitor verbatim: they must be known now.
            let Some(key) = self.str(item, &format!("a key of {what}")) else {
                ok = false;
                continue;
            };
            if keys::is_reboot_key(&key) {
                ok = false;
                self.diags.push(
                    Diagnostic::error("reboot_key", Some(item.span), format!("`{key}` reboots the machine"))
                        .with_label("the driver would not know the machine rebooted")
                        .with_hint(
                            "use `{ reboot = true; }`: it presses the same keys and then waits for the machine \
                             to come back (with `sendKeys` the next command finds the machine gone)",
                        ),
                );
                continue;
            }
            if let Err(why) = keys::check_key(&key) {
                ok = false;
                let mut d = Diagnostic::error("unknown_key_name", Some(item.span), why)
                    .with_label("not a key QEMU can press");
                let bad = key.split('-').find(|p| !p.is_empty() && keys::check_key(p).is_err());
                if let Some(near) = bad.and_then(keys::closest_key) {
                    d = d.with_hint(format!("did you mean `{near}`?"));
                }
                self.diags.push(d.with_hint(
                    "write QEMU key names joined by `-` for keys pressed together (`ctrl-alt-delete`, `alt-f2`, \
                     `ret`, `spc`, `esc`), or one character; to type text use `sendChars`",
                ));
                continue;
            }
            keys.push(key);
        }
        ok.then_some(keys)
    }

    /// Text `sendChars` types: characters the stock table or QEMU's key
    /// names cover.
    fn typable(&mut self, chars: &str, span: Span) {
        if crate::spec::computed::is_placeholder(chars) {
            return;
        }
        if let Some(c) = keys::first_untypable(chars) {
            let shown = super::convert::shown_char(c);
            self.diags.push(
                Diagnostic::error("untypable_char", Some(span), format!("`sendChars` cannot type {shown}"))
                    .with_label("no key for this character")
                    .with_hint(
                        "`sendChars` types printable ASCII and newlines; press other keys with `sendKeys` \
                         (e.g. `tab`, `esc`)",
                    ),
            );
        }
    }

    /// A virtual console number, 1 to [`MAX_TTY`].
    fn tty(&mut self, v: &Value, what: &str) -> Option<Num<u8>> {
        self.num(v, what, ComputedType::Int { min: 1, max: MAX_TTY }, |c, v| {
            let n = c.int(v, what)?;
            match u8::try_from(n) {
                Ok(tty) if (1..=MAX_TTY).contains(&n) => Some(tty),
                _ => {
                    c.diags.push(
                        Diagnostic::error(
                            "invalid_tty",
                            Some(v.span),
                            format!("{what} {n} is not a virtual console"),
                        )
                        .with_label(format!("expected 1 to {MAX_TTY}"))
                        .with_hint("give the number N of /dev/ttyN, e.g. `1` for the first console"),
                    );
                    None
                }
            }
        })
    }

    /// `waitForX = true;` (the step's node) or `waitForX = "<node>";`.
    fn wait_for_x(&mut self, e: &Entry) -> Option<(Action, NodeRef)> {
        let v = &e.value;
        match &v.kind {
            Kind::Bool(true) => Some((Action::WaitForX, None)),
            Kind::Str(name) => Some((Action::WaitForX, Some((name.clone(), v.span)))),
            Kind::Opaque { .. } | Kind::Computed { .. } => {
                self.wrong_type(v, Ty::Str, "`waitForX`");
                None
            }
            other => {
                self.diags.push(
                    Diagnostic::error(
                        "wrong_type",
                        Some(v.span),
                        format!("`waitForX` must be a node name or `true`, found {}", other.describe()),
                    )
                    .with_label("expected a node name or `true`")
                    .with_hint("write `waitForX = true;` for the step's node, or `waitForX = \"<node>\";`"),
                );
                None
            }
        }
    }
}
