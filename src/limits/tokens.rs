//! Nix tokens exactly as rnix 0.15.1's tokenizer gives them, in one pass.
//!
//! Why not `rnix::tokenize`: every Nix file is tokenized once before rnix
//! parses it, to refuse nesting that would exhaust the stack
//! ([`super::check_nesting`]), and rnix's tokenizer is slow for that job. At
//! the start of every token it rescans the run of path characters ahead
//! (`a.b.c`, to tell the path `a.b/c` and the URI `a:b` from names), which
//! is quadratic in the run: 80 KB of `a.a.a…` took 52 s to `check`. It also
//! costs about 90 instructions a byte where this costs a few.
//!
//! This tokenizer follows rnix's state machine (its contexts for strings,
//! interpolations and paths, its path and URI look-ahead, its error
//! tokens) but remembers where the current run of path characters ends, and
//! it counts the characters rnix's look-ahead would scan
//! ([`Tokens::rescan`]), so a file whose tokenizing would take rnix minutes
//! is refused before rnix sees it. `tokens_equal_rnix` (a property test)
//! and the `tokens` fuzz target check that the tokens are rnix's, byte for
//! byte, on any input.
//!
//! Read from rnix 0.15.1, `src/tokenizer.rs` (crates.io,
//! checksum f5edd5ce…); keep in step when rnix is upgraded.

use rnix::SyntaxKind::{self, *};

/// The tokens of a text and what rnix's look-ahead would scan for them.
pub struct Tokens<'a> {
    pub tokens: Vec<rnix::Token<'a>>,
    /// Characters rnix's tokenizer rescans for its path and URI look-ahead
    /// (the sum, over token starts, of the path-character run ahead).
    pub rescan: u64,
    /// The run of path characters that cost the most rescanning, as a byte
    /// range, for the diagnostic when [`Tokens::rescan`] is too high.
    pub costliest: (usize, usize),
}

/// Tokenizes `text` as `rnix::tokenize` would.
pub fn tokenize(text: &str) -> Tokens<'_> {
    let mut lexer = Lexer {
        text,
        b: text.as_bytes(),
        i: 0,
        ctx: Vec::new(),
        run: Run::default(),
        search_run_end: 0,
        rescan: 0,
        costliest: (0, 0, 0),
    };
    // Most tokens of real files are 3-6 bytes long.
    let mut tokens = Vec::with_capacity(text.len() / 4 + 4);
    loop {
        let start = lexer.i;
        match lexer.next_token() {
            Some(kind) => tokens.push((kind, &text[start..lexer.i])),
            None => break,
        }
    }
    let (_, s, e) = lexer.costliest;
    Tokens { tokens, rescan: lexer.rescan, costliest: (s, e) }
}

/// rnix's tokenizer contexts (what the next token continues).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ctx {
    StringBody { multiline: bool },
    StringEnd,
    Interpol { brackets: u32 },
    InterpolStart,
    Path(SyntaxKind),
}

/// What rnix's look-ahead makes of the token starting here.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Guess {
    PathRel,
    PathAbs,
    PathHome,
    PathSearch,
    Uri,
}

/// The maximal run of path characters the current position is in: every
/// token start inside it sees the same end (the look-ahead's cost is the
/// distance to it), and an underscore in the rest of the run rules out a
/// URI.
#[derive(Default)]
struct Run {
    start: usize,
    end: usize,
    /// The last `_` in the run, if any.
    last_underscore: Option<usize>,
    /// Rescanning charged to this run so far.
    cost: u64,
}

struct Lexer<'a> {
    text: &'a str,
    b: &'a [u8],
    i: usize,
    ctx: Vec<Ctx>,
    run: Run,
    /// End of the run of path characters, `<` and `/` after a `<`.
    search_run_end: usize,
    rescan: u64,
    costliest: (u64, usize, usize),
}

/// Byte classes, one bit each, looked up in [`CLASS`]: the tokenizer asks
/// these questions of nearly every byte.
const PATH: u8 = 1;
const URI: u8 = 2;
const IDENT: u8 = 4;
const SPACE: u8 = 8;

const CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        let path = b.is_ascii_alphanumeric() || matches!(b, b'/' | b'_' | b'.' | b'+' | b'-');
        let uri = path
            || matches!(
                b,
                b'%' | b'?' | b':' | b'@' | b'&' | b'=' | b'$' | b',' | b'!' | b'~' | b'*' | b'\''
            );
        let ident = b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'\'');
        // ASCII whitespace as `char::is_whitespace` has it (with VT).
        let space = matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c);
        t[c] = (path as u8 * PATH) | (uri as u8 * URI) | (ident as u8 * IDENT) | (space as u8 * SPACE);
        c += 1;
    }
    t
};

fn is_path_byte(c: u8) -> bool {
    CLASS[c as usize] & PATH != 0
}

fn is_uri_byte(c: u8) -> bool {
    CLASS[c as usize] & URI != 0
}

fn is_ident_byte(c: u8) -> bool {
    CLASS[c as usize] & IDENT != 0
}

/// The path characters without `/`: what a name-like run is made of.
fn is_run_byte(c: u8) -> bool {
    c != b'/' && is_path_byte(c)
}

impl Lexer<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn peek_at(&self, at: usize) -> Option<u8> {
        self.b.get(at).copied()
    }

    /// The character at byte `at` (rnix looks at characters; only ASCII
    /// ones ever match, but a non-ASCII one may be whitespace).
    fn char_at(&self, at: usize) -> Option<char> {
        self.text.get(at..).and_then(|s| s.chars().next())
    }

    /// Steps over one character, as rnix's `next()`; whether there was one.
    fn bump_char(&mut self) -> bool {
        match self.peek() {
            None => false,
            Some(c) if c < 0x80 => {
                self.i += 1;
                true
            }
            Some(_) => {
                self.i += self.char_at(self.i).map_or(1, char::len_utf8);
                true
            }
        }
    }

    fn starts_with(&self, s: &[u8]) -> bool {
        self.b[self.i..].starts_with(s)
    }

    fn consume_while(&mut self, f: impl Fn(u8) -> bool) -> usize {
        let rest = &self.b[self.i..];
        let n = rest.iter().position(|&c| !f(c)).unwrap_or(rest.len());
        self.i += n;
        n
    }

    fn next_token(&mut self) -> Option<SyntaxKind> {
        let start = self.i;
        loop {
            match self.ctx.last().copied() {
                Some(Ctx::InterpolStart) => {
                    self.ctx.pop();
                    self.ctx.push(Ctx::Interpol { brackets: 0 });
                    // Pushed only in front of `${`.
                    self.i += 2;
                    return Some(TOKEN_INTERPOL_START);
                }
                Some(Ctx::Path(kind)) => {
                    if kind == TOKEN_PATH_SEARCH {
                        if self.peek().is_some_and(is_path_byte) {
                            return Some(self.path_since(start, kind));
                        }
                        self.ctx.pop();
                    } else if self.starts_with(b"${") {
                        self.i += 2;
                        self.ctx.push(Ctx::Interpol { brackets: 0 });
                        return Some(TOKEN_INTERPOL_START);
                    } else if self.peek().is_some_and(is_path_byte) {
                        return Some(self.path_since(start, kind));
                    } else {
                        self.ctx.pop();
                    }
                }
                Some(Ctx::StringBody { multiline }) => {
                    let kind = self.string_body(multiline);
                    if self.i == start {
                        continue;
                    }
                    return Some(kind);
                }
                Some(Ctx::StringEnd) => {
                    self.ctx.pop();
                    let end = match self.peek() {
                        Some(b'"') => {
                            self.i += 1;
                            true
                        }
                        Some(b'\'') => {
                            self.i += 1;
                            if self.peek() == Some(b'\'') {
                                self.i += 1;
                                true
                            } else {
                                false
                            }
                        }
                        _ => false,
                    };
                    return Some(if end { TOKEN_STRING_END } else { TOKEN_ERROR });
                }
                _ => {}
            }
            break;
        }
        self.expression(start)
    }

    /// A token outside strings and paths.
    fn expression(&mut self, start: usize) -> Option<SyntaxKind> {
        if self.whitespace() {
            return Some(TOKEN_WHITESPACE);
        }
        let c = self.peek()?;
        if c == b'#' {
            self.i = self.text[self.i..].find('\n').map_or(self.b.len(), |n| self.i + n);
            return Some(TOKEN_COMMENT);
        }
        if c == b'/' && self.peek_at(self.i + 1) == Some(b'*') {
            return Some(match find(&self.b[self.i + 2..], b"*/") {
                Some(n) => {
                    self.i += 2 + n + 2;
                    TOKEN_COMMENT
                }
                None => {
                    self.i = self.b.len();
                    TOKEN_ERROR
                }
            });
        }
        if c == b'.' && self.starts_with(b"...") {
            self.i += 3;
            return Some(TOKEN_ELLIPSIS);
        }
        let guess = self.guess(c);
        self.bump_char();
        if c == b'/' && self.peek() == Some(b'/') {
            self.i += 1;
            return Some(TOKEN_UPDATE);
        }
        if c == b'~'
            || matches!(guess, Some(Guess::PathAbs | Guess::PathRel))
            || (c == b'/' && self.peek().is_some_and(is_path_byte))
        {
            let kind = if c == b'~' {
                if !(self.peek() == Some(b'/') && self.bump_char()) {
                    self.bump_char();
                    return Some(TOKEN_ERROR);
                }
                TOKEN_PATH_HOME
            } else if c == b'/' {
                TOKEN_PATH_ABS
            } else {
                TOKEN_PATH_REL
            };
            self.ctx.push(Ctx::Path(kind));
            return Some(self.path_since(start, kind));
        }
        Some(self.punctuation_or_word(c, guess))
    }

    /// rnix's `consume(char::is_whitespace)`.
    fn whitespace(&mut self) -> bool {
        let from = self.i;
        while let Some(c) = self.peek() {
            if CLASS[c as usize] & SPACE != 0 {
                self.i += 1;
            } else if c >= 0x80 && self.char_at(self.i).is_some_and(char::is_whitespace) {
                self.bump_char();
            } else {
                break;
            }
        }
        self.i > from
    }

    /// rnix's look-ahead at the start of a token: the run of path
    /// characters ahead and the one or two characters after it.
    fn guess(&mut self, c: u8) -> Option<Guess> {
        if c == b'/' {
            return if self.starts_with(b"//") {
                None
            } else if self.starts_with(b"/${") {
                Some(Guess::PathAbs)
            } else {
                let next = self.peek_at(self.i + 1);
                next.filter(|&n| is_path_byte(n) && n != b'*').map(|_| Guess::PathAbs)
            };
        }
        if c == b'~' && self.peek_at(self.i + 1) == Some(b'/') {
            return Some(Guess::PathHome);
        }
        let (end, underscore) = if c == b'<' { (self.search_run(), false) } else { self.name_run() };
        match self.peek_at(end) {
            Some(b'/') => match self.char_at(end + 1) {
                Some('/' | '*') | None => None,
                Some(n) if n.is_whitespace() => None,
                Some(_) => Some(Guess::PathRel),
            },
            Some(b'>') => Some(Guess::PathSearch),
            Some(b':') if !underscore && self.peek_at(end + 1).is_some_and(is_uri_byte) => Some(Guess::Uri),
            _ => None,
        }
    }

    /// The end of the run of [`is_run_byte`]s from here, and whether it
    /// holds a `_`; charges the rescanning.
    fn name_run(&mut self) -> (usize, bool) {
        let i = self.i;
        if i >= self.run.end || i < self.run.start {
            let rest = &self.b[i..];
            let end = i + rest.iter().position(|&c| !is_run_byte(c)).unwrap_or(rest.len());
            let last_underscore = self.b[i..end].iter().rposition(|&c| c == b'_').map(|u| i + u);
            self.run = Run { start: i, end, last_underscore, cost: 0 };
        }
        let scanned = (self.run.end - i) as u64;
        self.rescan += scanned;
        self.run.cost += scanned;
        if self.run.cost > self.costliest.0 {
            self.costliest = (self.run.cost, self.run.start, self.run.end);
        }
        (self.run.end, self.run.last_underscore.is_some_and(|u| u >= i))
    }

    /// The end of the run rnix scans from a `<`: path characters, `<` and
    /// `/`. Every `<` inside one such run sees the same end.
    fn search_run(&mut self) -> usize {
        let i = self.i;
        if i >= self.search_run_end {
            let mut end = i;
            while self.b.get(end).is_some_and(|&c| c == b'<' || is_path_byte(c)) {
                end += 1;
            }
            self.search_run_end = end;
        }
        let scanned = (self.search_run_end - i) as u64;
        self.rescan += scanned;
        if scanned > self.costliest.0 {
            self.costliest = (scanned, i, self.search_run_end);
        }
        self.search_run_end
    }

    /// rnix's `check_path_since`: the rest of a path segment.
    fn path_since(&mut self, start: usize, kind: SyntaxKind) -> SyntaxKind {
        self.consume_while(is_path_byte);
        let segment = &self.b[start..self.i];
        if self.starts_with(b"${") {
            self.ctx.push(Ctx::InterpolStart);
        } else if segment.ends_with(b"/") || find(segment, b"//").is_some() {
            return TOKEN_ERROR;
        } else {
            self.ctx.pop();
        }
        kind
    }

    /// rnix's `next_string`: string content up to the next `"`, `''` or
    /// `${`, escapes included.
    fn string_body(&mut self, multiline: bool) -> SyntaxKind {
        loop {
            // Skip what cannot end the content.
            let rest = &self.b[self.i..];
            self.i += if multiline {
                rest.iter().position(|&c| c == b'\'' || c == b'$')
            } else {
                rest.iter().position(|&c| c == b'"' || c == b'\\' || c == b'$')
            }
            .unwrap_or(rest.len());
            let at = self.i;
            let Some(c) = self.peek() else {
                self.ctx.pop();
                return TOKEN_ERROR;
            };
            self.i += 1;
            match c {
                b'"' => {
                    self.i = at;
                    self.ctx.pop();
                    self.ctx.push(Ctx::StringEnd);
                    return TOKEN_STRING_CONTENT;
                }
                b'\\' => {
                    if !self.bump_char() {
                        return TOKEN_ERROR;
                    }
                }
                b'\'' => match self.peek() {
                    None => return TOKEN_ERROR,
                    Some(b'\'') => {
                        self.i += 1;
                        match self.peek() {
                            Some(b'\'' | b'$') => self.i += 1,
                            Some(b'\\') => {
                                self.i += 1;
                                if !self.bump_char() {
                                    return TOKEN_ERROR;
                                }
                            }
                            _ => {
                                self.i = at;
                                self.ctx.pop();
                                self.ctx.push(Ctx::StringEnd);
                                return TOKEN_STRING_CONTENT;
                            }
                        }
                    }
                    Some(_) => {}
                },
                // b'$'
                _ => match self.peek() {
                    Some(b'$') => self.i += 1,
                    Some(b'{') => {
                        self.i = at;
                        self.ctx.push(Ctx::InterpolStart);
                        return TOKEN_STRING_CONTENT;
                    }
                    _ => {}
                },
            }
        }
    }

    /// Operators, brackets, names, numbers, string starts: the token
    /// starting with `c` (already stepped over).
    fn punctuation_or_word(&mut self, c: u8, guess: Option<Guess>) -> SyntaxKind {
        let next = self.peek();
        let two = |me: &mut Self, kind| {
            me.i += 1;
            kind
        };
        match c {
            b'=' if next == Some(b'=') => two(self, TOKEN_EQUAL),
            b'!' if next == Some(b'=') => two(self, TOKEN_NOT_EQUAL),
            b'!' => TOKEN_INVERT,
            b'{' => {
                if let Some(Ctx::Interpol { brackets }) = self.ctx.last_mut() {
                    *brackets += 1;
                }
                TOKEN_L_BRACE
            }
            b'}' => {
                if let Some(Ctx::Interpol { brackets }) = self.ctx.last_mut() {
                    if *brackets == 0 {
                        self.ctx.pop();
                        return TOKEN_INTERPOL_END;
                    }
                    *brackets -= 1;
                }
                TOKEN_R_BRACE
            }
            b'[' => TOKEN_L_BRACK,
            b']' => TOKEN_R_BRACK,
            b'@' => TOKEN_AT,
            b':' => TOKEN_COLON,
            b',' => TOKEN_COMMA,
            b'.' if next.is_some_and(|n| n.is_ascii_digit()) => {
                self.consume_while(|c| c.is_ascii_digit());
                self.scientific()
            }
            b'.' => TOKEN_DOT,
            b'=' => TOKEN_ASSIGN,
            b'?' => TOKEN_QUESTION,
            b';' => TOKEN_SEMICOLON,
            b'(' => TOKEN_L_PAREN,
            b')' => TOKEN_R_PAREN,
            b'+' if next == Some(b'+') => two(self, TOKEN_CONCAT),
            b'-' if next == Some(b'>') => two(self, TOKEN_IMPLICATION),
            b'/' if next == Some(b'/') => two(self, TOKEN_UPDATE),
            b'+' => TOKEN_ADD,
            b'-' => TOKEN_SUB,
            b'*' => TOKEN_MUL,
            b'/' => TOKEN_DIV,
            b'<' if next == Some(b'|') => two(self, TOKEN_PIPE_LEFT),
            b'<' if guess == Some(Guess::PathSearch) => {
                if self.consume_while(is_path_byte) == 0 {
                    TOKEN_LESS
                } else if self.peek() == Some(b'>') {
                    self.i += 1;
                    TOKEN_PATH_SEARCH
                } else {
                    self.bump_char();
                    TOKEN_ERROR
                }
            }
            b'&' if next == Some(b'&') => two(self, TOKEN_AND_AND),
            b'|' if next == Some(b'>') => two(self, TOKEN_PIPE_RIGHT),
            b'|' if next == Some(b'|') => two(self, TOKEN_OR_OR),
            b'<' if next == Some(b'=') => two(self, TOKEN_LESS_OR_EQ),
            b'<' => TOKEN_LESS,
            b'>' if next == Some(b'=') => two(self, TOKEN_MORE_OR_EQ),
            b'>' => TOKEN_MORE,
            b'$' if next == Some(b'{') => {
                self.i += 1;
                self.ctx.push(Ctx::Interpol { brackets: 0 });
                TOKEN_INTERPOL_START
            }
            b'a'..=b'z' | b'A'..=b'Z' | b'_' => self.word(guess == Some(Guess::Uri)),
            b'"' => {
                self.ctx.push(Ctx::StringBody { multiline: false });
                TOKEN_STRING_START
            }
            b'\'' if next == Some(b'\'') => {
                self.i += 1;
                self.ctx.push(Ctx::StringBody { multiline: true });
                TOKEN_STRING_START
            }
            b'0'..=b'9' => {
                // A leading `0` not followed by `.` is an integer whatever
                // follows (rnix-parser issue 157).
                self.consume_while(|c| c.is_ascii_digit());
                if c != b'0' && self.peek() == Some(b'.') || c == b'0' && next == Some(b'.') {
                    self.i += 1;
                    self.consume_while(|c| c.is_ascii_digit());
                    self.scientific()
                } else {
                    TOKEN_INTEGER
                }
            }
            _ => TOKEN_ERROR,
        }
    }

    /// A name, keyword or URI (when the look-ahead saw `scheme:`).
    fn word(&mut self, uri: bool) -> SyntaxKind {
        let start = self.i - 1;
        if uri {
            self.consume_while(|c| CLASS[c as usize] & (IDENT | URI) != 0);
            return TOKEN_URI;
        }
        self.consume_while(is_ident_byte);
        match &self.b[start..self.i] {
            b"assert" => TOKEN_ASSERT,
            b"else" => TOKEN_ELSE,
            b"if" => TOKEN_IF,
            b"in" => TOKEN_IN,
            b"inherit" => TOKEN_INHERIT,
            b"let" => TOKEN_LET,
            b"or" => TOKEN_OR,
            b"rec" => TOKEN_REC,
            b"then" => TOKEN_THEN,
            b"with" => TOKEN_WITH,
            _ => TOKEN_IDENT,
        }
    }

    /// An exponent after a float's digits, if any.
    fn scientific(&mut self) -> SyntaxKind {
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.peek(), Some(b'-' | b'+')) {
                self.i += 1;
            }
            if self.consume_while(|c| c.is_ascii_digit()) == 0 {
                return TOKEN_ERROR;
            }
        }
        TOKEN_FLOAT
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn same_as_rnix(text: &str) {
        let ours = tokenize(text).tokens;
        let theirs: Vec<_> = rnix::tokenize(text).collect();
        assert_eq!(ours, theirs, "tokens of {text:?}");
    }

    #[test]
    fn real_shapes_equal_rnix() {
        for text in [
            "{ pkgs, lib, ... }: { nodes.machine = { services.nginx.enable = true; }; }",
            "let a = 1; in a // { b = [ 1 2.5 .5 0.1e3 1e 00.5 007 ]; }",
            r#"{ x = "a ${b} \" \${c} $${d} $ e"; y = ''
                 line '''quoted''' ''$dollar ''\n ${ { a = 1; }.a } done
               ''; }"#,
            "./a/b.nix /abs/${x}/y ~/home <nixpkgs/lib> <nixpkgs> a.b/c a//b a/*c*/ a/ b /",
            "https://example.org/x?y=1 x:x _a:b a_b:c a->b !a != b <= >= < > && || |> <| ++ -1",
            "/* unterminated",
            "\"unterminated ${",
            "'' unterminated ''\\",
            "~x ~ ` \\ % ^ & | $ ' é \u{a0} a\u{2028}b",
            "with a; assert b; if c then d else e or f; inherit (x) y z; rec { }",
            "./a${b}c${d} ./a${b} ./a//b ./a/ <a/b/c> <a:b> <> <<a>",
            "# comment\n#\n\r\n\t\x0b\x0c x",
        ] {
            same_as_rnix(text);
        }
    }

    #[test]
    fn long_runs_are_counted_not_rescanned() {
        let text = format!("x = a{};", ".a".repeat(2_000));
        let t = tokenize(&text);
        same_as_rnix(&text);
        // rnix rescans the rest of the run at each of its 4,001 tokens.
        assert_eq!(t.rescan, 4_001 * 4_002 / 2 + 1, "{}", t.rescan);
        assert_eq!(t.costliest, (4, 4 + 4_001));
        let plain = tokenize("{ a.b.c = 1; d = e.f; }");
        assert!(plain.rescan < 30, "{}", plain.rescan);
    }

    /// Characters that steer rnix's tokenizer, and a few that do not.
    fn nixish() -> impl Strategy<Value = String> {
        let atoms = prop::sample::select(vec![
            "a", "b_", "x-y", "in", "let", "or", "1", "0", "2.5", ".", "..", "...", "/", "//", "/*", "*/",
            "*", "~", "<", ">", "|", "&", "=", "!", ":", "@", "?", "+", "-", ";", ",", "(", ")", "[", "]",
            "{", "}", "${", "$", "$$", "\"", "'", "''", "'''", "''$", "''\\", "\\", "#", "\n", " ", "\t",
            "e", "E", "%", "é", "\u{a0}", "\u{2028}", "_", "http", "x:y",
        ]);
        prop::collection::vec(atoms, 0..40).prop_map(|v| v.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4_000))]
        #[test]
        fn tokens_equal_rnix(text in nixish()) {
            same_as_rnix(&text);
        }

        #[test]
        fn tokens_equal_rnix_on_any_text(text in "\\PC{0,60}") {
            same_as_rnix(&text);
        }
    }
}
