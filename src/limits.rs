//! Bounds on every Nix file the tool reads (`flake.nix`, the files it
//! imports, descriptions): its type, its size, and how deeply its syntax
//! tree can nest, all checked before anything recursive runs.
//!
//! rnix's parser recurses for brackets and right-associative operators
//! (`//`, `++`, `->`) without a limit, left-associative chains (`1 + 1 + …`,
//! `f a b …`) become left-deep trees, and rowan drops and our walkers recurse
//! over those trees. A file nested deeper than [`MAX_NESTING`] is therefore
//! refused from its tokens alone ([`check_nesting`], one linear pass), with
//! the position of the token that crossed the limit. `flake/` and `spec/`
//! both call it.

use std::io::Read;
use std::path::Path;

use rnix::SyntaxKind;

use crate::diagnostic::{Diagnostic, FileId, Span};

pub mod tokens;

/// Largest Nix file read, in bytes. Real flakes and descriptions are a few
/// kilobytes; 16 MiB parses in about a second and a few hundred MiB of
/// memory (docs/reliability.md).
pub const MAX_FILE_BYTES: u64 = 16 << 20;

/// Deepest syntax tree accepted, as estimated by [`check_nesting`]: every
/// bracket, and every operator, application, `let`, `with`, `assert`, `if`
/// and lambda within one expression counts one level.
pub const MAX_NESTING: usize = 256;

/// Reads a Nix source file with the limits above. Only regular files (or
/// links to one) are opened: a FIFO, socket or device (`/dev/zero`,
/// `/dev/urandom`) is refused by its file type first, and opened without
/// blocking in case it was swapped in between. The errors are
/// [`std::io::Error`]s so callers keep their error paths; a file that is not
/// UTF-8 is `InvalidData`, like [`std::fs::read_to_string`].
pub fn read_nix_file(path: &Path) -> std::io::Result<String> {
    use std::os::unix::fs::OpenOptionsExt;
    let meta = std::fs::metadata(path)?;
    not_regular(&meta)?;
    too_large(meta.len())?;
    let file =
        std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY).open(path)?;
    let meta = file.metadata()?;
    not_regular(&meta)?;
    // Sized from the open file's length (+1 to see the end at once): two
    // reads per file instead of a growing buffer's seven, which `check`
    // pays for every description on every run.
    let mut bytes = Vec::with_capacity(meta.len().min(MAX_FILE_BYTES) as usize + 1);
    file.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes)?;
    too_large(bytes.len() as u64)?;
    String::from_utf8(bytes).map_err(|_| {
        std::io::Error::new(std::io::ErrorKind::InvalidData, "stream did not contain valid UTF-8")
    })
}

fn not_regular(meta: &std::fs::Metadata) -> std::io::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    let kind = if t.is_file() {
        return Ok(());
    } else if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() || t.is_block_device() {
        "a device"
    } else {
        "not a regular file"
    };
    Err(std::io::Error::new(
        std::io::ErrorKind::InvalidInput,
        format!("it is {kind}, not a regular file (only regular files are read)"),
    ))
}

fn too_large(len: u64) -> std::io::Result<()> {
    if len <= MAX_FILE_BYTES {
        return Ok(());
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::InvalidInput,
        format!("it is larger than {} MiB, the limit for a Nix file", MAX_FILE_BYTES >> 20),
    ))
}

/// Why a file is refused before rnix parses it, with the byte range to
/// show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Nested deeper than [`MAX_NESTING`]: the token that crossed the limit.
    TooDeep { start: usize, end: usize },
    /// A run of name and path characters (`a.a.a…`) that rnix's tokenizer
    /// would rescan at each of its tokens (see [`tokens`]): the run.
    TooCostly { start: usize, end: usize },
}

impl Refusal {
    pub fn range(&self) -> (usize, usize) {
        match *self {
            Refusal::TooDeep { start, end } | Refusal::TooCostly { start, end } => (start, end),
        }
    }

    /// The message every caller shows.
    pub fn message(&self) -> String {
        match self {
            Refusal::TooDeep { .. } => {
                format!("the expression is nested more than {MAX_NESTING} levels deep")
            }
            Refusal::TooCostly { start, end } => format!(
                "a run of {} name and path characters without a space: Nix's tokenizers take time \
                 quadratic in such runs",
                end - start
            ),
        }
    }

    pub fn hint(&self) -> &'static str {
        match self {
            Refusal::TooDeep { .. } => {
                "long operator chains (`a // b // …`, `1 + 1 + …`) and deep brackets nest too; \
                 split the expression with `let` bindings or lists"
            }
            Refusal::TooCostly { .. } => {
                "attribute paths, names and numbers this long are not hand-written Nix; \
                 split them with `let` bindings, or quote the value as a string"
            }
        }
    }

    /// The `nix_syntax` diagnostic at the refused range.
    pub fn diagnostic(&self, file: FileId) -> Diagnostic {
        let (start, end) = self.range();
        let span = Span {
            file,
            start: u32::try_from(start).unwrap_or(u32::MAX),
            end: u32::try_from(end).unwrap_or(u32::MAX),
        };
        let label = match self {
            Refusal::TooDeep { .. } => "too deep",
            Refusal::TooCostly { .. } => "too long",
        };
        Diagnostic::error("nix_syntax", Some(span), self.message()).with_label(label).with_hint(self.hint())
    }
}

/// How many characters rnix's tokenizer may rescan for a text of `len`
/// bytes ([`tokens::Tokens::rescan`]). Hand-written Nix rescans a few
/// times its length (attribute paths like `services.nginx.enable`); a
/// run of `a.a.a…` rescans its length squared over 4. 64 per byte plus
/// 4 Mi is far above the first and keeps the second to about a second.
fn rescan_budget(len: usize) -> u64 {
    64 * len as u64 + (4 << 20)
}

/// The `nix_syntax` diagnostic for a file that must not reach rnix's
/// parser (nested too deeply, or too costly to tokenize), if it is one.
pub fn nesting_diagnostic(file: FileId, text: &str) -> Option<Diagnostic> {
    checked_tokens(text).err().map(|r| r.diagnostic(file))
}

/// The tokens of `text` (exactly rnix's) when rnix may parse it, or why
/// not. Callers that scan the tokens for more use these.
pub fn checked_tokens(text: &str) -> Result<Vec<rnix::Token<'_>>, Refusal> {
    let t = tokens::tokenize(text);
    if t.rescan > rescan_budget(text.len()) {
        let (start, end) = t.costliest;
        return Err(Refusal::TooCostly { start, end });
    }
    check_nesting_tokens(t.tokens.iter().copied())?;
    Ok(t.tokens)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Top,
    Paren,
    Brack,
    Brace,
    Interpol,
    Str,
    Let,
}

struct Frame {
    kind: Kind,
    /// Levels added inside the current expression of this frame.
    chain: usize,
    /// `with`/`assert` whose `;` is still to come (that `;` ends no binding).
    pending: usize,
    /// The last token ended an operand, so another operand is an application.
    after_operand: bool,
    /// Inside `inherit …;`, where names follow each other without applying.
    inherit: bool,
    /// A `let` frame that has seen no token yet (`let {` is the legacy form).
    fresh: bool,
}

impl Frame {
    fn new(kind: Kind) -> Frame {
        Frame { kind, chain: 0, pending: 0, after_operand: false, inherit: false, fresh: true }
    }
}

/// Whether rnix may parse `text`: its tokens cost rnix's tokenizer at most
/// [`rescan_budget`], and an upper bound of its syntax tree's depth, from
/// the tokens alone (linear time, constant stack), stays within
/// [`MAX_NESTING`]; `Err` at the first token beyond.
pub fn check_nesting(text: &str) -> Result<(), Refusal> {
    checked_tokens(text).map(drop)
}

/// [`check_nesting`] of the tokens of a text (rnix's, in order), for a
/// caller that tokenizes once for several checks.
pub fn check_nesting_tokens<'a>(tokens: impl IntoIterator<Item = rnix::Token<'a>>) -> Result<(), Refusal> {
    use SyntaxKind::*;
    let mut stack = vec![Frame::new(Kind::Top)];
    // Σ (1 + chain) over the stack, kept up to date.
    let mut depth = 1usize;
    let mut offset = 0usize;
    for (kind, tok) in tokens {
        let start = offset;
        offset += tok.len();
        if matches!(kind, TOKEN_WHITESPACE | TOKEN_COMMENT) {
            continue;
        }
        let top = stack.last_mut().expect("the top frame is never popped");
        let legacy_let = top.kind == Kind::Let && top.fresh && kind == TOKEN_L_BRACE;
        top.fresh = false;
        let opens = match kind {
            TOKEN_L_PAREN => Some(Kind::Paren),
            TOKEN_L_BRACK => Some(Kind::Brack),
            TOKEN_L_BRACE => Some(Kind::Brace),
            TOKEN_INTERPOL_START => Some(Kind::Interpol),
            TOKEN_STRING_START => Some(Kind::Str),
            _ => None,
        };
        let closes = match kind {
            TOKEN_R_PAREN => Some(Kind::Paren),
            TOKEN_R_BRACK => Some(Kind::Brack),
            TOKEN_R_BRACE => Some(Kind::Brace),
            TOKEN_INTERPOL_END => Some(Kind::Interpol),
            TOKEN_STRING_END => Some(Kind::Str),
            _ => None,
        };
        let operand = matches!(
            kind,
            TOKEN_IDENT
                | TOKEN_INTEGER
                | TOKEN_FLOAT
                | TOKEN_PATH_ABS
                | TOKEN_PATH_HOME
                | TOKEN_PATH_REL
                | TOKEN_PATH_SEARCH
                | TOKEN_URI
                | TOKEN_CUR_POS
        ) || opens.is_some();
        if legacy_let {
            let f = stack.pop().expect("let frame");
            depth -= 1 + f.chain;
            let top = stack.last_mut().expect("top");
            top.after_operand = false;
        }
        let top = stack.last_mut().expect("top");
        if operand && top.after_operand && top.kind != Kind::Str && !top.inherit {
            if top.kind == Kind::Brack {
                // A new list element: the previous one is a sibling.
                depth -= top.chain;
                top.chain = 0;
            } else {
                top.chain += 1;
                depth += 1;
            }
        }
        if let Some(k) = opens {
            top.after_operand = false;
            stack.push(Frame::new(k));
            depth += 1;
        } else if let Some(k) = closes {
            if top.kind == k && stack.len() > 1 {
                let f = stack.pop().expect("frame");
                depth -= 1 + f.chain;
            }
            stack.last_mut().expect("top").after_operand = true;
        } else if operand {
            top.after_operand = true;
        } else {
            top.after_operand = false;
            match kind {
                TOKEN_LET => {
                    top.chain += 1;
                    stack.push(Frame::new(Kind::Let));
                    depth += 2;
                }
                TOKEN_IN => {
                    if top.kind == Kind::Let && stack.len() > 1 {
                        let f = stack.pop().expect("let frame");
                        depth -= 1 + f.chain;
                    }
                }
                TOKEN_SEMICOLON => {
                    if top.pending > 0 {
                        top.pending -= 1;
                    } else if matches!(top.kind, Kind::Brace | Kind::Let) {
                        depth -= top.chain;
                        top.chain = 0;
                        top.inherit = false;
                    }
                }
                TOKEN_COMMA if top.kind == Kind::Brace => {
                    depth -= top.chain;
                    top.chain = 0;
                }
                TOKEN_INHERIT => top.inherit = true,
                TOKEN_WITH | TOKEN_ASSERT => {
                    top.pending += 1;
                    top.chain += 1;
                    depth += 1;
                }
                TOKEN_STRING_CONTENT | TOKEN_ASSIGN | TOKEN_ELLIPSIS | TOKEN_COMMA | TOKEN_ERROR
                | TOKEN_THEN | TOKEN_ELSE | TOKEN_REC => {}
                // Operators, `if`, `:`, `@`, `?`, `.`, `or`: one level each.
                _ => {
                    top.chain += 1;
                    depth += 1;
                }
            }
        }
        if depth > MAX_NESTING {
            return Err(Refusal::TooDeep { start, end: offset });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn depth_ok(text: &str) -> bool {
        check_nesting(text).is_ok()
    }

    #[test]
    fn real_shapes_pass() {
        let many_bindings: String = (0..100_000).map(|i| format!("a{i}.b.c = x y z; ")).collect();
        assert!(depth_ok(&format!("{{ {many_bindings} }}")));
        let long_list: String = "a.b (f x) [ 1 ] { } \"s${x}\" ".repeat(50_000);
        assert!(depth_ok(&format!("[ {long_list} ]")));
        let inherits: String = (0..50_000).map(|i| format!(" n{i}")).collect();
        assert!(depth_ok(&format!("{{ inherit{inherits}; }}")));
        assert!(depth_ok(&format!("let {many_bindings} in x")));
        assert!(depth_ok("let { body = 1; }"));
        assert!(depth_ok(&format!("[ {} ]", "{ a = with x; with y; assert z; 1; } ".repeat(10_000))));
        let steps: String = "{ succeed = \"echo ${x}\"; node = \"m\"; } ".repeat(100_000);
        assert!(depth_ok(&format!("{{ steps = [ {steps} ]; }}")));
        assert!(depth_ok("{ outputs = { self, nixpkgs ? null, ... }@inputs: a // b // c; }"));
    }

    #[test]
    fn deep_shapes_are_refused_at_the_crossing_token() {
        for text in [
            "[".repeat(100_000),
            format!("x{}", " // x".repeat(100_000)),
            format!("1{}", " + 1".repeat(1_000_000)),
            format!("f{}", " a".repeat(10_000)),
            "x: ".repeat(10_000),
            "with x; ".repeat(10_000),
            "let a = 1; in ".repeat(10_000),
            "!".repeat(10_000),
            "-".repeat(10_000),
            format!("{{ a{} = 1; }}", ".a".repeat(10_000)),
            "\"${".repeat(10_000),
        ] {
            let e = check_nesting(&text).expect_err(&text[..20.min(text.len())]);
            let (start, end) = e.range();
            assert!(start < end && end <= text.len());
        }
    }

    #[test]
    fn runs_that_rnix_would_rescan_for_minutes_are_refused_at_the_run() {
        // Each `.1` is a new list element: nothing nests, but rnix's
        // tokenizer rescans the rest of the run at each of them.
        let text = format!("[ 1{} ]", ".1".repeat(20_000));
        assert_eq!(check_nesting(&text), Err(Refusal::TooCostly { start: 2, end: 2 + 40_001 }));
        let d = nesting_diagnostic(FileId(0), &text).expect("refused");
        assert!(d.message.contains("a run of 40001 name and path characters"), "{}", d.message);
        // The same elements with spaces, and long hand-written attribute
        // paths, are fine.
        assert!(depth_ok(&format!("[ 1{} ]", " .1".repeat(20_000))));
        let paths: String = (0..20_000).map(|i| format!("services.s{i}.settings.a.b.c = 1; ")).collect();
        assert!(depth_ok(&format!("{{ {paths} }}")));
    }

    #[test]
    fn only_regular_files_are_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("f.nix");
        std::fs::write(&f, "{ }").expect("write");
        assert_eq!(read_nix_file(&f).expect("read"), "{ }");
        for special in ["/dev/zero", "/dev/null", "/dev/urandom"] {
            let e = read_nix_file(Path::new(special)).expect_err(special);
            assert!(e.to_string().contains("a device"), "{e}");
        }
        assert!(read_nix_file(dir.path()).expect_err("dir").to_string().contains("a directory"));
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).expect("path");
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert!(read_nix_file(&fifo).expect_err("fifo").to_string().contains("a FIFO"));
        let big = dir.path().join("big.nix");
        std::fs::File::create(&big).expect("create").set_len(MAX_FILE_BYTES + 1).expect("truncate");
        assert!(read_nix_file(&big).expect_err("big").to_string().contains("larger than"));
        std::fs::write(&f, b"\xff").expect("write");
        assert_eq!(read_nix_file(&f).expect_err("utf-8").kind(), std::io::ErrorKind::InvalidData);
    }
}
