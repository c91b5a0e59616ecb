//! Files between host and guest, and what the display shows.

use super::convert::{Conv, ShellWord, Sibling};
use crate::spec::Action;
use crate::spec::value::Entry;

impl Conv<'_> {
    pub(super) fn copy_from_vm<'e>(&mut self, e: &Entry, sibling: Sibling<'_, 'e>) -> Option<Action> {
        let v = &e.value;
        let source = self.str(v, &format!("`{}`", e.key));
        if let Some(source) = &source {
            self.shell_word(ShellWord::CopySource, source, v.span);
        }
        let target_dir = self.opt_str(sibling, "targetDir");
        if let (Some(dir), Some(entry)) = (&target_dir, sibling("targetDir")) {
            self.out_path("`targetDir`", dir, entry.value.span);
        }
        Some(Action::CopyFromVm { source: source?, target_dir })
    }

    pub(super) fn screenshot(&mut self, e: &Entry) -> Option<Action> {
        let v = &e.value;
        let name = self.str(v, &format!("`{}`", e.key))?;
        self.shell_word(ShellWord::Screenshot, &name, v.span);
        if !name.starts_with('-') {
            self.out_path("screenshot name", &name, v.span);
        }
        Some(Action::Screenshot { name })
    }
}
