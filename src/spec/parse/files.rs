//! Files between host and guest, and what the display shows.

use super::convert::{Conv, ShellWord, Sibling, key_name};
use crate::diagnostic::Diagnostic;
use crate::spec::computed::{ComputedType, placeholder};
use crate::spec::value::{Entry, Kind};
use crate::spec::{Action, Num, names};

impl Conv<'_> {
    pub(super) fn copy_from_vm<'e>(&mut self, e: &Entry, sibling: Sibling<'_, 'e>) -> Option<Action> {
        let v = &e.value;
        let source = self.str(v, &key_name("", &e.key));
        if let Some(source) = &source {
            self.shell_word(ShellWord::CopySource, source, v.span);
        }
        let target_dir = self.opt_str(sibling, "targetDir");
        if let (Some(dir), Some(entry)) = (&target_dir, sibling("targetDir")) {
            self.out_path("`targetDir`", dir, entry.value.span);
        }
        Some(Action::CopyFromVm { source: source?, target_dir })
    }

    /// `copyFromHost = "files/app.conf"; target = "/etc/app.conf";`: the
    /// source is a path relative to the description's directory (no `..`),
    /// which the generated check turns into a store path, or a value Nix
    /// computes (`"${pkgs.hello}/share"`, `./files/app.conf`), which must
    /// be a store path.
    pub(super) fn copy_from_host<'e>(&mut self, e: &Entry, sibling: Sibling<'_, 'e>) -> Option<Action> {
        let v = &e.value;
        let what = key_name("", &e.key);
        let source = match &v.kind {
            // A path value is copied to the store by the interpolation.
            Kind::Computed { expr, .. } => Some(placeholder(self.push_computed(
                &format!("\"${{{expr}}}\""),
                ComputedType::String,
                Some(names::STORE_PATH_PATTERN),
                &what,
                v.span,
            ))),
            _ => {
                let source = self.str(v, &what)?;
                // A literal store path (what `--eval` reads back) is taken as it is.
                if let Some(rest) = source.strip_prefix(names::STORE_DIR) {
                    self.host_path_inside(&source, crate::fsutil::check_relative(rest).is_ok(), v);
                    Some(source)
                } else if self.host_path_inside(&source, crate::fsutil::check_relative(&source).is_ok(), v) {
                    // The file inside the flake's source in the store.
                    let rel = format!("/{}/{source}", self.dir).replace("//", "/");
                    let expr = format!("\"${{self}}{}\"", nix_string_body(&rel));
                    let index = self.push_computed(
                        &expr,
                        ComputedType::String,
                        Some(names::STORE_PATH_PATTERN),
                        &what,
                        v.span,
                    );
                    Some(placeholder(index))
                } else {
                    None
                }
            }
        };
        let target = match sibling("target") {
            Some(t) => self.str(&t.value, "`target`").filter(|target| {
                let before = self.diags.len();
                self.shell_word(ShellWord::CopyTarget, target, t.value.span);
                if self.diags.len() == before && (!target.starts_with('/') || target.trim_matches('/').is_empty()) {
                    self.diags.push(
                        Diagnostic::error(
                            "relative_guest_path",
                            Some(t.value.span),
                            format!("`target` {target} is not an absolute path below `/`"),
                        )
                        .with_label("where in the VM?")
                        .with_hint("write the absolute path the file gets in the VM, e.g. `\"/etc/app/config.toml\"`"),
                    );
                }
                self.diags.len() == before
            }),
            None => {
                self.diags.push(
                    Diagnostic::error("missing_field", Some(e.key_span), "`copyFromHost` has no `target`")
                        .with_label("copied where?")
                        .with_hint("add the path in the VM next to it: `target = \"/etc/app/config.toml\";`"),
                );
                None
            }
        };
        Some(Action::CopyFromHost { source: source?, target: target? })
    }

    /// Reports a `copyFromHost` source that leaves the description's
    /// directory (`ok` false); returns `ok`.
    fn host_path_inside(&mut self, source: &str, ok: bool, v: &crate::spec::value::Value) -> bool {
        if !ok {
            let shown = source.escape_debug();
            self.diags.push(
                Diagnostic::error(
                    "host_path_outside",
                    Some(v.span),
                    format!("`copyFromHost`: `{shown}` is not a path inside the description's directory"),
                )
                .with_label("must name a file next to the description")
                .with_hint(
                    "write a path relative to the description's directory without `..` (e.g. \
                     `\"files/app.conf\"`), or a store path Nix computes (`\"${pkgs.hello}/share\"`, \
                     `./files/app.conf`): the test's host side runs in the build sandbox",
                ),
            );
        }
        ok
    }

    /// `forwardPort = 8080; guestPort = 80;` (the stock defaults: 8080 → 80).
    pub(super) fn forward_port<'e>(&mut self, e: &Entry, sibling: Sibling<'_, 'e>) -> Option<Action> {
        let host_port = self.port(&e.value, &key_name("", &e.key));
        let guest_port = match sibling("guestPort") {
            Some(g) => self.port(&g.value, "`guestPort`"),
            None => Some(Num::Lit(80)),
        };
        Some(Action::ForwardPort { host_port: host_port?, guest_port: guest_port? })
    }

    pub(super) fn screenshot(&mut self, e: &Entry) -> Option<Action> {
        let v = &e.value;
        let name = self.str(v, &key_name("", &e.key))?;
        self.shell_word(ShellWord::Screenshot, &name, v.span);
        if !name.starts_with('-') {
            self.out_path("screenshot name", &name, v.span);
        }
        Some(Action::Screenshot { name })
    }
}

/// `s` as the inside of a Nix `"…"` string.
fn nix_string_body(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace("${", "\\${")
}
