//! Any `Serialize` value as a flat tree of Nix literal pieces, built by a
//! `serde` serializer of our own: the value `serde_json::to_value` would
//! give (externally tagged enums, `None` as null, non-finite floats as
//! null), without its `String` per key and value and its map per object.
//! Scalars and attribute names are stored already written as Nix (strings
//! escaped, negative numbers parenthesised), attribute sets are put in
//! Nix's order (byte order of the names) as they are closed, and every node
//! knows the width of its one-line form: the layout then only copies.

use serde::ser::{self, Serialize};

use super::super::escape::{is_nix_identifier, push_nix_string};

/// A value that has no Nix literal of the same JSON: a map key that is
/// not a string, integer, boolean or character, or an integer beyond 64 bits.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Unrepresentable(String);

impl ser::Error for Unrepresentable {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        Unrepresentable(msg.to_string())
    }
}

/// Bytes `start..end` of the tree's text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Text {
    start: u32,
    end: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `null`, a boolean, number or string, as Nix.
    Scalar(Text),
    List,
    Attrs,
}

/// An attribute's name: as given (for the order) and as Nix writes it.
#[derive(Clone, Copy, Debug)]
pub struct Name {
    raw: Text,
    pub nix: Text,
    /// Characters of `nix`.
    pub width: u32,
}

/// One value; its children (for lists and attribute sets) follow it, each
/// with its own subtree, up to `end`.
#[derive(Clone, Copy, Debug)]
pub struct Node {
    pub kind: Kind,
    /// The attribute name, for the children of an attribute set.
    pub name: Option<Name>,
    /// The index just after this node's subtree.
    pub end: u32,
    /// Characters of the one-line form (saturating).
    pub width: u32,
}

/// The nodes of a value in pre-order, and the text of its pieces.
#[derive(Default)]
pub struct Tree {
    pub nodes: Vec<Node>,
    text: String,
    /// The name the next node gets (set by attribute sets).
    pending: Option<Name>,
    /// A map key is being serialized: scalars become `pending` names.
    in_key: bool,
    /// Scratch space for putting attribute sets in order (reused).
    order: Vec<(Text, u32, u32)>,
    moved: Vec<Node>,
}

impl Tree {
    /// The tree of `value`.
    pub fn of<T: Serialize + ?Sized>(value: &T) -> Result<Tree, Unrepresentable> {
        let mut tree = Tree::default();
        value.serialize(&mut tree)?;
        Ok(tree)
    }

    pub fn str(&self, t: Text) -> &str {
        &self.text[t.start as usize..t.end as usize]
    }

    /// The children of node `i`, in order.
    pub fn children(&self, i: usize) -> impl Iterator<Item = usize> + '_ {
        let end = self.nodes[i].end as usize;
        let mut next = i + 1;
        std::iter::from_fn(move || {
            (next < end).then(|| {
                let child = next;
                next = self.nodes[child].end as usize;
                child
            })
        })
    }

    /// The text written since `start`.
    fn since(&self, start: usize) -> Text {
        Text { start: to_u32(start), end: to_u32(self.text.len()) }
    }

    fn width(&self, t: Text) -> u32 {
        let s = self.str(t);
        let n = if s.is_ascii() { s.len() } else { s.chars().count() };
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    /// Makes `raw` (just written) the name of the next node.
    fn name_next(&mut self, raw: Text) {
        let nix = if is_nix_identifier(self.str(raw)) {
            raw
        } else {
            let start = self.text.len();
            let (from, to) = (raw.start as usize, raw.end as usize);
            // Escaped from a copy: the text cannot be borrowed while it grows.
            let name = self.text[from..to].to_string();
            push_nix_string(&mut self.text, &name);
            self.since(start)
        };
        let width = self.width(nix);
        self.pending = Some(Name { raw, nix, width });
    }

    fn name_next_str(&mut self, name: &str) {
        let start = self.text.len();
        self.text.push_str(name);
        let raw = self.since(start);
        self.name_next(raw);
    }

    /// Appends a node (with the pending name) and returns its index.
    fn push(&mut self, kind: Kind, width: u32) -> usize {
        let i = self.nodes.len();
        let name = self.pending.take();
        self.nodes.push(Node { kind, name, end: to_u32(i + 1), width });
        i
    }

    /// Appends the scalar written to the text since `start` (or, inside a
    /// map key, takes the raw text `raw` as the next name).
    fn scalar(&mut self, start: usize) -> Result<(), Unrepresentable> {
        let text = self.since(start);
        self.push(Kind::Scalar(text), self.width(text));
        Ok(())
    }

    /// A key's text as written: the name of the next node.
    fn key(&mut self, raw: &str) -> Result<(), Unrepresentable> {
        self.in_key = false;
        self.name_next_str(raw);
        Ok(())
    }

    fn not_a_key(&self) -> Result<(), Unrepresentable> {
        if self.in_key {
            return Err(Unrepresentable("a map key that is not a string".to_string()));
        }
        Ok(())
    }

    fn open_container(&mut self, kind: Kind) -> Result<usize, Unrepresentable> {
        self.not_a_key()?;
        Ok(self.push(kind, 0))
    }

    /// Ends container `i`: its subtree is everything pushed since; an
    /// attribute set is put in order of its names, and of names given twice
    /// the last one is kept (as a JSON object keeps it). Then its width.
    fn close(&mut self, i: usize) {
        let end = self.nodes.len();
        self.nodes[i].end = to_u32(end);
        if self.nodes[i].kind == Kind::Attrs {
            self.order_attrs(i);
        }
        let (attrs, empty) = (self.nodes[i].kind == Kind::Attrs, self.nodes[i].end as usize == i + 1);
        // `[ a b ]`, `{ a = 1; b = 2; }`, `[ ]`, `{ }`.
        let mut width: u64 = 3;
        if !empty {
            for child in self.children(i) {
                let node = &self.nodes[child];
                width += 1 + u64::from(node.width);
                if let (true, Some(name)) = (attrs, node.name) {
                    width += u64::from(name.width) + 4;
                }
            }
        }
        self.nodes[i].width = u32::try_from(width).unwrap_or(u32::MAX);
    }

    fn order_attrs(&mut self, i: usize) {
        let end = self.nodes.len();
        self.order.clear();
        let mut child = i + 1;
        while child < end {
            let next = self.nodes[child].end as usize;
            let name = self.nodes[child].name.expect("attribute set children have names");
            self.order.push((name.raw, to_u32(child), to_u32(next)));
            child = next;
        }
        let text = &self.text;
        let name = |t: &Text| &text.as_bytes()[t.start as usize..t.end as usize];
        if self.order.windows(2).all(|w| name(&w[0].0) < name(&w[1].0)) {
            return;
        }
        // Stable: of equal names, the last given stays last and is kept.
        self.order.sort_by(|a, b| name(&a.0).cmp(name(&b.0)));
        self.moved.clear();
        self.moved.extend_from_slice(&self.nodes[i + 1..]);
        self.nodes.truncate(i + 1);
        let base = i + 1;
        for (k, &(key, from, to)) in self.order.iter().enumerate() {
            if self.order.get(k + 1).is_some_and(|next| name(&next.0) == name(&key)) {
                continue;
            }
            let at = self.nodes.len();
            let (from, to) = (from as usize, to as usize);
            for node in &self.moved[from - base..to - base] {
                let mut node = *node;
                node.end = to_u32(node.end as usize - from + at);
                self.nodes.push(node);
            }
        }
        self.nodes[i].end = to_u32(self.nodes.len());
    }

    /// Starts a list or attribute set (inside `{ variant = … }` for a variant).
    fn open(&mut self, kind: Kind, variant: Option<&str>) -> Result<Compound<'_>, Unrepresentable> {
        let outer = match variant {
            Some(name) => {
                let outer = self.open_container(Kind::Attrs)?;
                self.name_next_str(name);
                Some(outer)
            }
            None => None,
        };
        let at = self.open_container(kind)?;
        Ok(Compound { tree: self, at, outer })
    }

    fn int(&mut self, v: i64) -> Result<(), Unrepresentable> {
        if self.in_key {
            // As serde_json names an object's integer keys: the digits.
            return self.key(&v.to_string());
        }
        let start = self.text.len();
        push_int(&mut self.text, v);
        self.scalar(start)
    }

    fn float(&mut self, v: f64) -> Result<(), Unrepresentable> {
        self.not_a_key()?;
        let start = self.text.len();
        if v.is_finite() {
            push_float(&mut self.text, v);
        } else {
            self.text.push_str("null");
        }
        self.scalar(start)
    }

    fn string(&mut self, v: &str) -> Result<(), Unrepresentable> {
        if self.in_key {
            return self.key(v);
        }
        let start = self.text.len();
        push_nix_string(&mut self.text, v);
        self.scalar(start)
    }

    fn word(&mut self, v: &str) -> Result<(), Unrepresentable> {
        self.not_a_key()?;
        let start = self.text.len();
        self.text.push_str(v);
        self.scalar(start)
    }
}

/// Integers as integers, negative ones parenthesised.
fn push_int(out: &mut String, n: i64) {
    if n == i64::MIN {
        // Nix reads `-` and the literal separately; 2^63 overflows the literal.
        out.push_str("(-9223372036854775807 - 1)");
        return;
    }
    if n < 0 {
        out.push_str("(-");
    }
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut rest = n.unsigned_abs();
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    out.push_str(std::str::from_utf8(&digits[at..]).expect("ASCII digits"));
    if n < 0 {
        out.push(')');
    }
}

/// Floats (and integers beyond Nix's 64-bit signed range) always with a
/// decimal point and never in exponent form (Nix float literals need the
/// point; Rust's `Display` never uses an exponent).
fn push_float(out: &mut String, f: f64) {
    // Whole numbers (most timeouts) print as their integer does.
    if f.fract() == 0.0 && f.abs() < 1e15 && !(f == 0.0 && f.is_sign_negative()) {
        push_int(out, f as i64);
        let at = if f < 0.0 { out.len() - 1 } else { out.len() };
        out.insert_str(at, ".0");
        return;
    }
    let mut text = f.to_string();
    if !text.contains('.') {
        text.push_str(".0");
    }
    if text.starts_with('-') {
        out.push('(');
        out.push_str(&text);
        out.push(')');
    } else {
        out.push_str(&text);
    }
}

/// Trees index text and nodes with u32: a plan is far below 4 GiB.
fn to_u32(n: usize) -> u32 {
    u32::try_from(n).expect("a value of less than 4 GiB")
}

/// A list or attribute set being serialized; `outer` is the set around a
/// variant (`{ variant = … }`), closed after it.
pub struct Compound<'a> {
    tree: &'a mut Tree,
    at: usize,
    outer: Option<usize>,
}

impl Compound<'_> {
    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Unrepresentable> {
        value.serialize(&mut *self.tree)
    }

    fn field<T: Serialize + ?Sized>(&mut self, key: &str, value: &T) -> Result<(), Unrepresentable> {
        self.tree.name_next_str(key);
        value.serialize(&mut *self.tree)
    }

    fn finish(self) -> Result<(), Unrepresentable> {
        self.tree.close(self.at);
        if let Some(outer) = self.outer {
            self.tree.close(outer);
        }
        Ok(())
    }
}

impl<'a> ser::Serializer for &'a mut Tree {
    type Ok = ();
    type Error = Unrepresentable;
    type SerializeSeq = Compound<'a>;
    type SerializeTuple = Compound<'a>;
    type SerializeTupleStruct = Compound<'a>;
    type SerializeTupleVariant = Compound<'a>;
    type SerializeMap = Compound<'a>;
    type SerializeStruct = Compound<'a>;
    type SerializeStructVariant = Compound<'a>;

    fn serialize_bool(self, v: bool) -> Result<(), Unrepresentable> {
        let word = if v { "true" } else { "false" };
        if self.in_key {
            return self.key(word);
        }
        self.word(word)
    }
    fn serialize_i8(self, v: i8) -> Result<(), Unrepresentable> {
        self.int(v.into())
    }
    fn serialize_i16(self, v: i16) -> Result<(), Unrepresentable> {
        self.int(v.into())
    }
    fn serialize_i32(self, v: i32) -> Result<(), Unrepresentable> {
        self.int(v.into())
    }
    fn serialize_i64(self, v: i64) -> Result<(), Unrepresentable> {
        self.int(v)
    }
    fn serialize_i128(self, v: i128) -> Result<(), Unrepresentable> {
        match (i64::try_from(v), u64::try_from(v)) {
            (Ok(v), _) => self.int(v),
            (_, Ok(v)) => self.serialize_u64(v),
            _ => Err(Unrepresentable(format!("the integer {v} is beyond 64 bits"))),
        }
    }
    fn serialize_u8(self, v: u8) -> Result<(), Unrepresentable> {
        self.int(v.into())
    }
    fn serialize_u16(self, v: u16) -> Result<(), Unrepresentable> {
        self.int(v.into())
    }
    fn serialize_u32(self, v: u32) -> Result<(), Unrepresentable> {
        self.int(v.into())
    }
    fn serialize_u64(self, v: u64) -> Result<(), Unrepresentable> {
        match i64::try_from(v) {
            Ok(v) => self.int(v),
            Err(_) if self.in_key => self.key(&v.to_string()),
            // Beyond Nix's integers: a float, as serde_json reads it back.
            Err(_) => self.float(v as f64),
        }
    }
    fn serialize_u128(self, v: u128) -> Result<(), Unrepresentable> {
        match u64::try_from(v) {
            Ok(v) => self.serialize_u64(v),
            Err(_) => Err(Unrepresentable(format!("the integer {v} is beyond 64 bits"))),
        }
    }
    fn serialize_f32(self, v: f32) -> Result<(), Unrepresentable> {
        self.float(v.into())
    }
    fn serialize_f64(self, v: f64) -> Result<(), Unrepresentable> {
        self.float(v)
    }
    fn serialize_char(self, v: char) -> Result<(), Unrepresentable> {
        self.string(v.encode_utf8(&mut [0; 4]))
    }
    fn serialize_str(self, v: &str) -> Result<(), Unrepresentable> {
        self.string(v)
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<(), Unrepresentable> {
        let list = self.open_container(Kind::List)?;
        for &b in v {
            self.int(b.into())?;
        }
        self.close(list);
        Ok(())
    }
    fn serialize_none(self) -> Result<(), Unrepresentable> {
        self.serialize_unit()
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Unrepresentable> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), Unrepresentable> {
        self.word("null")
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), Unrepresentable> {
        self.serialize_unit()
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<(), Unrepresentable> {
        self.string(variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<(), Unrepresentable> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), Unrepresentable> {
        let at = self.open_container(Kind::Attrs)?;
        self.name_next_str(variant);
        value.serialize(&mut *self)?;
        self.close(at);
        Ok(())
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Compound<'a>, Unrepresentable> {
        self.open(Kind::List, None)
    }
    fn serialize_tuple(self, _: usize) -> Result<Compound<'a>, Unrepresentable> {
        self.open(Kind::List, None)
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Compound<'a>, Unrepresentable> {
        self.open(Kind::List, None)
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Compound<'a>, Unrepresentable> {
        self.open(Kind::List, Some(variant))
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Compound<'a>, Unrepresentable> {
        self.open(Kind::Attrs, None)
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Compound<'a>, Unrepresentable> {
        self.open(Kind::Attrs, None)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Compound<'a>, Unrepresentable> {
        self.open(Kind::Attrs, Some(variant))
    }
}

/// Sequences, tuples, tuple structs and tuple variants take their
/// elements the same way.
macro_rules! list_like {
    ($($trait:ident :: $method:ident),*) => {$(
        impl ser::$trait for Compound<'_> {
            type Ok = ();
            type Error = Unrepresentable;
            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Unrepresentable> {
                self.element(value)
            }
            fn end(self) -> Result<(), Unrepresentable> {
                self.finish()
            }
        }
    )*};
}

list_like!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field
);

impl ser::SerializeMap for Compound<'_> {
    type Ok = ();
    type Error = Unrepresentable;
    /// Strings and characters name the next value as they are, integers
    /// and booleans by their JSON text (as serde_json names object keys).
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Unrepresentable> {
        self.tree.in_key = true;
        let done = key.serialize(&mut *self.tree);
        let named = !std::mem::replace(&mut self.tree.in_key, false);
        done?;
        if named { Ok(()) } else { Err(Unrepresentable("a map key that is not a string".to_string())) }
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Unrepresentable> {
        self.element(value)
    }
    fn end(self) -> Result<(), Unrepresentable> {
        self.finish()
    }
}

impl ser::SerializeStruct for Compound<'_> {
    type Ok = ();
    type Error = Unrepresentable;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Unrepresentable> {
        self.field(key, value)
    }
    fn end(self) -> Result<(), Unrepresentable> {
        self.finish()
    }
}

impl ser::SerializeStructVariant for Compound<'_> {
    type Ok = ();
    type Error = Unrepresentable;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Unrepresentable> {
        self.field(key, value)
    }
    fn end(self) -> Result<(), Unrepresentable> {
        self.finish()
    }
}
