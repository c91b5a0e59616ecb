//! `expect` of the command steps, and `http`.

use super::convert::{Conv, Sibling, code_list, key_name};
use crate::diagnostic::Diagnostic;
use crate::spec::computed::{ComputedType, Num};
use crate::spec::parse::{EXPECT_KEYS, HTTP_KEYS};
use crate::spec::value::{Entry, Kind, Value};
use crate::spec::{Action, Expect};

/// The action keys of this family.
pub(super) const COMMAND_KEYS: &[&str] =
    &["succeed", "fail", "waitUntilSucceeds", "waitUntilFails", "execute"];

impl Conv<'_> {
    pub(super) fn command_action<'e>(&mut self, e: &Entry, sibling: Sibling<'_, 'e>) -> Option<Action> {
        let v = &e.value;
        let what = key_name("", &e.key);
        Some(match e.key.as_str() {
            "succeed" | "waitUntilSucceeds" | "execute" => {
                let command = self.command(v, &what, false);
                let expect = match sibling("expect") {
                    Some(x) => self.expect(&x.value),
                    None => Some(Expect::default()),
                };
                let capture = self.capture(sibling);
                let (command, expect, capture) = (command?, expect?, capture?);
                match e.key.as_str() {
                    "succeed" => Action::Succeed { command, expect, capture },
                    "execute" => Action::Execute { command, expect, capture },
                    _ => Action::WaitUntilSucceeds { command, expect, capture },
                }
            }
            "fail" => Action::Fail { command: self.command(v, &what, true)? },
            "waitUntilFails" => Action::WaitUntilFails { command: self.command(v, &what, true)? },
            _ => return None,
        })
    }

    /// One string or a list of strings (each may be computed).
    fn texts(&mut self, v: &Value, what: &str) -> Option<Vec<String>> {
        match &v.kind {
            Kind::List(items) => {
                let texts: Vec<Option<String>> = items.iter().map(|i| self.text(i, what, None)).collect();
                texts.into_iter().collect()
            }
            _ => self.text(v, what, None).map(|t| vec![t]),
        }
    }

    /// Plain data as JSON (`expect.json`): static, since it shapes the check.
    fn json(&mut self, v: &Value, what: &str) -> Option<serde_json::Value> {
        use serde_json::Value as J;
        Some(match &v.kind {
            Kind::Null => J::Null,
            Kind::Bool(b) => J::Bool(*b),
            Kind::Int(i) => J::from(*i),
            Kind::Float(f) => serde_json::Number::from_f64(*f).map(J::Number)?,
            Kind::Str(_) => J::String(self.str(v, what)?),
            Kind::List(items) => {
                J::Array(items.iter().map(|i| self.json(i, what)).collect::<Option<Vec<_>>>()?)
            }
            Kind::Attrs(entries) => J::Object(
                entries
                    .iter()
                    .map(|e| Some((e.key.clone(), self.json(&e.value, &format!("{what}.{}", e.key))?)))
                    .collect::<Option<serde_json::Map<_, _>>>()?,
            ),
            _ => {
                self.wrong_type(v, super::convert::Ty::Attrs, what);
                return None;
            }
        })
    }

    pub(super) fn expect(&mut self, v: &Value) -> Option<Expect> {
        let entries = self.attrs(v, "`expect`")?;
        let mut out = Expect::default();
        let mut ok = true;
        for e in entries {
            let what = key_name("expect.", &e.key);
            match e.key.as_str() {
                "contains" => match self.texts(&e.value, &what) {
                    Some(items) => out.contains = items,
                    None => ok = false,
                },
                "notContains" => match self.texts(&e.value, &what) {
                    Some(items) => out.not_contains = items,
                    None => ok = false,
                },
                "json" => match self.json(&e.value, &what) {
                    Some(value) => out.json = Some(value),
                    None => ok = false,
                },
                "equals" => out.equals = self.text(&e.value, &what, None),
                "matches" => {
                    out.matches = self.text(&e.value, &what, None);
                    if let Some(p) = &out.matches {
                        self.regex(p, e.value.span);
                    }
                }
                "exitCode" => {
                    let code = self.num(&e.value, &what, ComputedType::Int { min: 0, max: 255 }, |c, v| {
                        let code = c.int(v, &what)?;
                        if !(0..=255).contains(&code) {
                            c.diags.push(
                                Diagnostic::error(
                                    "exit_code_out_of_range",
                                    Some(v.span),
                                    format!("exit code {code} is out of range"),
                                )
                                .with_label("not in 0..255")
                                .with_hint("exit statuses are between 0 and 255"),
                            );
                        }
                        i32::try_from(code).ok().filter(|c| (0..=255).contains(c))
                    });
                    ok &= code.is_some();
                    out.exit_code = code;
                }
                _ => {
                    ok = false;
                    self.unknown_key(
                        "unknown_expect_key",
                        e,
                        EXPECT_KEYS,
                        &format!("`expect` takes {}", code_list(EXPECT_KEYS)),
                    );
                }
            }
        }
        ok.then_some(out)
    }

    pub(super) fn http(&mut self, v: &Value) -> Option<Action> {
        let entries = self.attrs(v, "`http`")?;
        let mut url = None;
        let mut status = Num::Lit(200);
        let mut contains = None;
        let mut ok = true;
        for e in entries {
            let what = key_name("http.", &e.key);
            match e.key.as_str() {
                "url" => url = self.text(&e.value, &what, None),
                "status" => {
                    let ty = ComputedType::Int { min: 100, max: 599 };
                    match self.num(&e.value, &what, ty, |c, v| {
                        let s = c.int(v, &what)?;
                        if !(100..=599).contains(&s) {
                            c.diags.push(
                                Diagnostic::error(
                                    "status_out_of_range",
                                    Some(v.span),
                                    format!("HTTP status {s} is out of range"),
                                )
                                .with_label("not in 100..599")
                                .with_hint("use an HTTP status code such as 200 or 404"),
                            );
                        }
                        u16::try_from(s).ok().filter(|s| (100..=599).contains(s))
                    }) {
                        Some(s) => status = s,
                        None => ok = false,
                    }
                }
                "contains" => {
                    if e.value.kind != Kind::Null {
                        contains = self.text(&e.value, &what, None);
                        ok &= contains.is_some();
                    }
                }
                _ => {
                    ok = false;
                    self.unknown_key(
                        "unknown_http_key",
                        e,
                        HTTP_KEYS,
                        &format!("`http` takes {}", code_list(HTTP_KEYS)),
                    );
                }
            }
        }
        if !entries.iter().any(|e| e.key == "url") {
            self.diags.push(
                Diagnostic::error("missing_field", Some(v.span), "`http` has no `url`")
                    .with_label("missing `url`")
                    .with_hint("add the address to fetch: `url = \"http://localhost:8080/\";`"),
            );
            return None;
        }
        if !ok {
            return None;
        }
        Some(Action::Http { url: url?, status, contains })
    }
}
