//! Any `Serialize` value as a flat tree of Nix literal pieces, built by a
//! `serde` serializer of our own: the value `serde_json::to_value` would
//! give (externally tagged enums, `None` as null, non-finite floats as
//! null), without its `String` per key and value and its map per object.
//! Scalars are stored already written as Nix (strings escaped, negative
//! numbers parenthesised), attribute names in a [`Names`] table, and each
//! container lists its children, an attribute set's in Nix's order (byte
//! order of the names) as it is closed, without moving any node. Every node
//! knows the width of its one-line form: the layout then only copies.

use serde::ser::{self, Serialize};

use super::names::{NameId, Names, char_width, to_u32};
use crate::spec::strings::push_nix_string;

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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `null`, a boolean, number or string, as Nix.
    Scalar,
    List,
    Attrs,
}

/// One value.
#[derive(Clone, Copy, Debug)]
pub struct Node {
    pub kind: Kind,
    /// The attribute name, for the children of an attribute set.
    pub name: NameId,
    /// A scalar's text is `text[a..b]`; a closed container's children are
    /// `kids[a..a + b]` (while it is open, `a` marks where its children
    /// start in `open`).
    a: u32,
    b: u32,
    /// Characters of the one-line form (saturating).
    pub width: u32,
}

/// The nodes of a value (the root first), the text of its scalars and the
/// children of its containers. Built again in place for each value (see
/// [`Tree::rebuild`]) so its buffers are allocated once per thread.
#[derive(Default)]
pub struct Tree {
    nodes: Vec<Node>,
    text: String,
    kids: Vec<u32>,
    /// The nodes of the open containers, innermost last.
    open: Vec<u32>,
    pub names: Names,
    /// The name the next node gets (set by attribute sets).
    pending: Option<NameId>,
    /// A map key is being serialized: scalars become `pending` names.
    in_key: bool,
}

impl Tree {
    /// The tree of `value`.
    #[cfg(test)]
    pub fn of<T: Serialize + ?Sized>(value: &T) -> Result<Tree, Unrepresentable> {
        let mut tree = Tree::default();
        tree.rebuild(value)?;
        Ok(tree)
    }

    /// Makes this the tree of `value`, keeping the buffers and static names.
    pub fn rebuild<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Unrepresentable> {
        self.nodes.clear();
        self.text.clear();
        self.kids.clear();
        self.open.clear();
        self.names.clear_own();
        self.pending = None;
        self.in_key = false;
        value.serialize(&mut *self)
    }

    pub fn node(&self, i: usize) -> &Node {
        &self.nodes[i]
    }

    /// A scalar's Nix text.
    pub fn scalar(&self, node: &Node) -> &str {
        &self.text[node.a as usize..node.b as usize]
    }

    /// The children of a container, in order.
    pub fn children(&self, node: &Node) -> &[u32] {
        &self.kids[node.a as usize..(node.a + node.b) as usize]
    }

    /// Appends a node (with the pending name) and returns its index.
    fn push(&mut self, kind: Kind, a: u32, b: u32, width: u32) -> usize {
        let i = self.nodes.len();
        let name = self.pending.take().unwrap_or(NameId::NONE);
        self.nodes.push(Node { kind, name, a, b, width });
        self.open.push(to_u32(i));
        i
    }

    /// Appends the scalar written to the text since `start`.
    fn push_scalar(&mut self, start: usize) -> Result<(), Unrepresentable> {
        let width = char_width(&self.text[start..]);
        self.push(Kind::Scalar, to_u32(start), to_u32(self.text.len()), width);
        Ok(())
    }

    /// A key's text as written: the name of the next node.
    fn key(&mut self, raw: &str) -> Result<(), Unrepresentable> {
        self.in_key = false;
        self.pending = Some(self.names.of_own(raw));
        Ok(())
    }

    fn name_next_static(&mut self, name: &'static str) {
        self.pending = Some(self.names.of_static(name));
    }

    fn not_a_key(&self) -> Result<(), Unrepresentable> {
        if self.in_key {
            return Err(Unrepresentable("a map key that is not a string".to_string()));
        }
        Ok(())
    }

    fn open_container(&mut self, kind: Kind) -> Result<usize, Unrepresentable> {
        self.not_a_key()?;
        let i = self.push(kind, 0, 0, 0);
        self.nodes[i].a = to_u32(self.open.len());
        Ok(i)
    }

    /// Ends container `i`: its children are the nodes pushed since it was
    /// opened; an attribute set's are put in order of their names, and of
    /// names given twice the last one is kept (as a JSON object keeps it).
    /// Then its width.
    fn close(&mut self, i: usize) {
        let mark = self.nodes[i].a as usize;
        let attrs = self.nodes[i].kind == Kind::Attrs;
        if attrs {
            self.order_attrs(mark);
        }
        let start = self.kids.len();
        self.kids.extend_from_slice(&self.open[mark..]);
        self.open.truncate(mark);
        // `[ a b ]`, `{ a = 1; b = 2; }`, `[ ]`, `{ }`.
        let mut width: u64 = 3;
        for &child in &self.kids[start..] {
            let node = &self.nodes[child as usize];
            width += 1 + u64::from(node.width);
            if attrs {
                width += u64::from(self.names.width(node.name)) + 4;
            }
        }
        let node = &mut self.nodes[i];
        node.a = to_u32(start);
        node.b = to_u32(self.kids.len() - start);
        node.width = u32::try_from(width).unwrap_or(u32::MAX);
    }

    /// Sorts the children in `open[mark..]` by name, dropping all but the
    /// last of equal names.
    fn order_attrs(&mut self, mark: usize) {
        let (nodes, names) = (&self.nodes, &self.names);
        let cmp = |a: &u32, b: &u32| names.cmp(nodes[*a as usize].name, nodes[*b as usize].name);
        let children = &mut self.open[mark..];
        if children.windows(2).all(|w| cmp(&w[0], &w[1]).is_lt()) {
            return;
        }
        // Stable: of equal names, the last given stays last and is kept.
        children.sort_by(cmp);
        let mut kept = 0;
        for k in 0..children.len() {
            if children.get(k + 1).is_some_and(|next| cmp(next, &children[k]).is_eq()) {
                continue;
            }
            children[kept] = children[k];
            kept += 1;
        }
        self.open.truncate(mark + kept);
    }

    /// Starts a list or attribute set (inside `{ variant = … }` for a variant).
    fn open(&mut self, kind: Kind, variant: Option<&'static str>) -> Result<Compound<'_>, Unrepresentable> {
        let outer = match variant {
            Some(name) => {
                let outer = self.open_container(Kind::Attrs)?;
                self.name_next_static(name);
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
            return self.key(itoa::Buffer::new().format(v));
        }
        let start = self.text.len();
        push_int(&mut self.text, v);
        self.push_scalar(start)
    }

    fn float(&mut self, v: f64) -> Result<(), Unrepresentable> {
        self.not_a_key()?;
        let start = self.text.len();
        if v.is_finite() {
            push_float(&mut self.text, v);
        } else {
            self.text.push_str("null");
        }
        self.push_scalar(start)
    }

    fn string(&mut self, v: &str) -> Result<(), Unrepresentable> {
        if self.in_key {
            return self.key(v);
        }
        let start = self.text.len();
        push_nix_string(&mut self.text, v);
        self.push_scalar(start)
    }

    fn word(&mut self, v: &str) -> Result<(), Unrepresentable> {
        self.not_a_key()?;
        let start = self.text.len();
        self.text.push_str(v);
        self.push_scalar(start)
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
        out.push_str(itoa::Buffer::new().format(n.unsigned_abs()));
        out.push(')');
    } else {
        out.push_str(itoa::Buffer::new().format(n));
    }
}

/// Floats (and integers beyond Nix's 64-bit signed range) always with a
/// decimal point and never in exponent form (Nix float literals need the
/// point; Rust's `Display` never uses an exponent).
fn push_float(out: &mut String, f: f64) {
    // Whole numbers (most timeouts) print as their integer does.
    if f.fract() == 0.0 && f.abs() < 1e15 && !(f == 0.0 && f.is_sign_negative()) {
        let whole = f as i64;
        if whole < 0 {
            out.push_str("(-");
            out.push_str(itoa::Buffer::new().format(whole.unsigned_abs()));
            out.push_str(".0)");
        } else {
            out.push_str(itoa::Buffer::new().format(whole));
            out.push_str(".0");
        }
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

    fn field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Result<(), Unrepresentable> {
        self.tree.name_next_static(key);
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
            Err(_) if self.in_key => self.key(itoa::Buffer::new().format(v)),
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
        self.name_next_static(variant);
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
