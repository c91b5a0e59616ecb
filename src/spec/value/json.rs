//! The value tree from evaluator JSON, with positions borrowed from the
//! static lowering where the two trees agree.

use super::{Entry, Kind, Shape, Value};
use crate::diagnostic::Span;

/// Builds the tree from evaluator output (`builtins.toJSON` of the
/// description with every `nodes.<name>` replaced by `null`). Every span is
/// `span`, since JSON carries no positions.
pub fn from_json(value: &serde_json::Value, span: Span) -> Value {
    json(value, Shape::Top, span)
}

/// [`from_json`] with positions borrowed from `located`, the static
/// lowering of the same file (whose data was not all static, or it would
/// not have been evaluated). Walking both trees together, a JSON value gets
/// the span of the static value at the same place: an attribute present in
/// both, a list item when both lists have the same length. Where the trees
/// part, the values below get the span of the last place they agreed (e.g.
/// every step of `steps = map f [ … ];` gets the span of `map f [ … ]`).
/// Values that agree on nothing below the root keep `fallback`: the root
/// spans the whole file, which would put them all on line 1.
pub fn from_json_located(value: &serde_json::Value, located: Option<&Value>, fallback: Span) -> Value {
    let root_span = located.map_or(fallback, |l| l.span);
    let kind = match (value, located.map(|l| &l.kind)) {
        (serde_json::Value::Object(map), Some(Kind::Attrs(entries))) => Kind::Attrs(
            map.iter()
                .map(|(k, v)| {
                    let at = entries.iter().find(|e| &e.key == k);
                    Entry {
                        key: k.clone(),
                        key_span: at.map_or(fallback, |e| e.key_span),
                        value: json_located(v, Shape::Top.child(k), at.map(|e| &e.value), fallback),
                    }
                })
                .collect(),
        ),
        _ => return from_json(value, fallback),
    };
    Value { kind, span: root_span }
}

/// One level of [`from_json_located`] below the root: `located` is the static
/// value at the same place, if the trees still agree; `inherited` the span
/// of the closest place where they did.
fn json_located(value: &serde_json::Value, shape: Shape, located: Option<&Value>, inherited: Span) -> Value {
    use serde_json::Value as J;
    let span = located.map_or(inherited, |l| l.span);
    if shape == Shape::Module {
        return Value { kind: Kind::Module, span };
    }
    let kind = match value {
        J::Array(items) => {
            let statics = match located.map(|l| &l.kind) {
                Some(Kind::List(s)) if s.len() == items.len() => Some(s),
                _ => None,
            };
            Kind::List(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| json_located(v, Shape::Data, statics.and_then(|s| s.get(i)), span))
                    .collect(),
            )
        }
        J::Object(map) => {
            let entries = located.and_then(Value::attrs);
            Kind::Attrs(
                map.iter()
                    .map(|(k, v)| {
                        let at = entries.and_then(|es| es.iter().find(|e| &e.key == k));
                        Entry {
                            key: k.clone(),
                            key_span: at.map_or(span, |e| e.key_span),
                            value: json_located(v, shape.child(k), at.map(|e| &e.value), span),
                        }
                    })
                    .collect(),
            )
        }
        scalar => json(scalar, shape, span).kind,
    };
    Value { kind, span }
}

fn json(value: &serde_json::Value, shape: Shape, span: Span) -> Value {
    use serde_json::Value as J;
    if shape == Shape::Module {
        return Value { kind: Kind::Module, span };
    }
    let kind = match value {
        J::Null => Kind::Null,
        J::Bool(b) => Kind::Bool(*b),
        J::Number(n) => match n.as_i64() {
            Some(i) => Kind::Int(i),
            None => Kind::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        J::String(s) => Kind::Str(s.clone()),
        J::Array(items) => Kind::List(items.iter().map(|v| json(v, Shape::Data, span)).collect()),
        J::Object(map) => Kind::Attrs(
            map.iter()
                .map(|(k, v)| Entry { key: k.clone(), key_span: span, value: json(v, shape.child(k), span) })
                .collect(),
        ),
    };
    Value { kind, span }
}
