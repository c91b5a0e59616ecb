//! Reading rnix's tree through its green nodes where a typed accessor would
//! walk a node's children once per question, each child a cursor allocated
//! and freed: lowering asks these for every attribute name and string of a
//! description (a third of its time on a cold `check`, callgrind).

use std::borrow::Cow;

use rnix::ast;
use rnix::{NodeOrToken, SyntaxKind};
use rowan::ast::AstNode;

fn raw(kind: SyntaxKind) -> rowan::SyntaxKind {
    rowan::SyntaxKind(kind as u16)
}

/// The text of `id`'s identifier token, as `id.ident_token()` finds it
/// (`None` for the `or` that rnix also parses as a name).
pub(super) fn ident_text(id: &ast::Ident) -> Option<&str> {
    id.syntax().green().children().find_map(|child| match child {
        NodeOrToken::Token(t) if t.kind() == raw(SyntaxKind::TOKEN_IDENT) => Some(t.text()),
        _ => None,
    })
}

/// `apv.attrpath()` and `apv.value()` from one walk of its children.
pub(super) fn attrpath_value(apv: &ast::AttrpathValue) -> (Option<ast::Attrpath>, Option<ast::Expr>) {
    let (mut path, mut value) = (None, None);
    for child in apv.syntax().children() {
        if child.kind() == SyntaxKind::NODE_ATTRPATH {
            path = path.or_else(|| ast::Attrpath::cast(child));
        } else if value.is_none() {
            value = ast::Expr::cast(child);
        }
        if path.is_some() && value.is_some() {
            break;
        }
    }
    (path, value)
}

/// A string literal without interpolation: whether it is an indented
/// string (`''…''`) and its raw content, borrowed when it is one token (the
/// usual case); `None` when it interpolates.
pub(super) fn plain_string(s: &ast::Str) -> Option<(bool, Cow<'_, str>)> {
    let mut multiline = false;
    let mut content: Cow<'_, str> = Cow::Borrowed("");
    for child in s.syntax().green().children() {
        let NodeOrToken::Token(t) = child else { return None };
        if t.kind() == raw(SyntaxKind::TOKEN_STRING_START) {
            multiline = t.text() == "''";
        } else if t.kind() == raw(SyntaxKind::TOKEN_STRING_CONTENT) {
            if content.is_empty() {
                content = Cow::Borrowed(t.text());
            } else {
                content.to_mut().push_str(t.text());
            }
        }
    }
    Some((multiline, content))
}
