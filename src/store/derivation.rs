//! `.drv` files: Nix's ATerm serialisation of a derivation.
//!
//! ```text
//! Derive([("out","/nix/store/…-x","","")],            outputs: name, path, hash algo, hash
//!        [("/nix/store/…-y.drv",["out"])],            input derivations and their outputs
//!        ["/nix/store/…-src"],                        input sources
//!        "x86_64-linux","/bin/sh",["-c","…"],         system, builder, args
//!        [("name","x"),("out","/nix/store/…-x")])     environment
//! ```
//!
//! Strings use the escapes `\"` `\\` `\n` `\r` `\t`; like Nix's reader, a
//! backslash before any other character stands for that character.

use std::collections::{BTreeMap, BTreeSet};

use super::path::{StorePath, StorePathError};

/// Why a `.drv` file could not be read. `offset` is a byte offset into the
/// file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DerivationError {
    #[error("byte {offset}: expected {expected}, found {found}")]
    Unexpected { offset: usize, expected: &'static str, found: String },
    #[error("byte {offset}: expected {expected}, found the end of the file")]
    UnexpectedEof { offset: usize, expected: &'static str },
    #[error("byte {offset}: string is not valid UTF-8")]
    InvalidUtf8 { offset: usize },
    #[error("byte {offset}: invalid store path: {source}")]
    StorePath {
        offset: usize,
        #[source]
        source: StorePathError,
    },
    #[error("byte {offset}: duplicate {what} `{key}`")]
    Duplicate { offset: usize, what: &'static str, key: String },
    #[error("byte {offset}: unexpected data after the derivation")]
    Trailing { offset: usize },
}

/// One output of a derivation. `path` is `None` for content-addressed
/// outputs whose path is only known after the build.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Output {
    pub path: Option<StorePath>,
    /// `""` for input-addressed outputs, e.g. `r:sha256` for fixed-output.
    pub hash_algo: String,
    pub hash: String,
}

/// A parsed `.drv` file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Derivation {
    pub outputs: BTreeMap<String, Output>,
    /// `.drv` path → names of the outputs used.
    pub input_derivations: BTreeMap<StorePath, BTreeSet<String>>,
    pub input_sources: BTreeSet<StorePath>,
    pub system: String,
    pub builder: String,
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
}

impl Derivation {
    /// Parses the contents of a `.drv` file.
    pub fn parse(input: &[u8]) -> Result<Derivation, DerivationError> {
        let mut p = Parser { input, pos: 0 };
        let drv = p.derivation()?;
        if p.pos != input.len() {
            return Err(DerivationError::Trailing { offset: p.pos });
        }
        Ok(drv)
    }

    /// The derivation's `name` (from its environment).
    pub fn name(&self) -> Option<&str> {
        self.env.get("name").map(String::as_str)
    }

    /// The path of output `out`, if known.
    pub fn out_path(&self) -> Option<&StorePath> {
        self.outputs.get("out").and_then(|o| o.path.as_ref())
    }

    /// Serialises back to ATerm, byte-for-byte as Nix writes it (sorted maps,
    /// same escapes).
    pub fn to_aterm(&self) -> String {
        let mut s = String::from("Derive([");
        list(&mut s, self.outputs.iter(), |s, (name, o)| {
            s.push('(');
            string(s, name);
            s.push(',');
            string(s, &o.path.as_ref().map(ToString::to_string).unwrap_or_default());
            s.push(',');
            string(s, &o.hash_algo);
            s.push(',');
            string(s, &o.hash);
            s.push(')');
        });
        s.push_str("],[");
        list(&mut s, self.input_derivations.iter(), |s, (path, outs)| {
            s.push('(');
            string(s, &path.to_string());
            s.push_str(",[");
            list(s, outs.iter(), |s, o| string(s, o));
            s.push_str("])");
        });
        s.push_str("],[");
        list(&mut s, self.input_sources.iter(), |s, p| string(s, &p.to_string()));
        s.push_str("],");
        string(&mut s, &self.system);
        s.push(',');
        string(&mut s, &self.builder);
        s.push_str(",[");
        list(&mut s, self.args.iter(), |s, a| string(s, a));
        s.push_str("],[");
        list(&mut s, self.env.iter(), |s, (k, v)| {
            s.push('(');
            string(s, k);
            s.push(',');
            string(s, v);
            s.push(')');
        });
        s.push_str("])");
        s
    }

    /// The JSON `nix show-derivation` (Nix 2.8) prints for this derivation
    /// (the value under its `.drv` path).
    pub fn to_show_derivation_json(&self) -> serde_json::Value {
        use serde_json::{Map, Value, json};
        let outputs: Map<String, Value> = self
            .outputs
            .iter()
            .map(|(name, o)| {
                let mut m = Map::new();
                if let Some(p) = &o.path {
                    m.insert("path".into(), json!(p.to_string()));
                }
                if !o.hash_algo.is_empty() {
                    m.insert("hashAlgo".into(), json!(o.hash_algo));
                }
                if !o.hash.is_empty() {
                    m.insert("hash".into(), json!(o.hash));
                }
                (name.clone(), Value::Object(m))
            })
            .collect();
        let input_drvs: Map<String, Value> =
            self.input_derivations.iter().map(|(p, outs)| (p.to_string(), json!(outs))).collect();
        json!({
            "outputs": outputs,
            "inputSrcs": self.input_sources.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "inputDrvs": input_drvs,
            "system": self.system,
            "builder": self.builder,
            "args": self.args,
            "env": self.env,
        })
    }
}

fn list<I: Iterator>(s: &mut String, items: I, mut each: impl FnMut(&mut String, I::Item)) {
    for (i, item) in items.enumerate() {
        if i > 0 {
            s.push(',');
        }
        each(s, item);
    }
}

fn string(s: &mut String, value: &str) {
    s.push('"');
    for c in value.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            '\n' => s.push_str("\\n"),
            '\r' => s.push_str("\\r"),
            '\t' => s.push_str("\\t"),
            c => s.push(c),
        }
    }
    s.push('"');
}

/// A cursor over the file; every method reports errors at `pos`.
struct Parser<'a> {
    input: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn derivation(&mut self) -> Result<Derivation, DerivationError> {
        self.expect(b"Derive(", "`Derive(`")?;
        let mut outputs = BTreeMap::new();
        self.list(|p| {
            let at = p.pos;
            p.expect(b"(", "`(`")?;
            let name = p.string()?;
            p.expect(b",", "`,`")?;
            let path_at = p.pos;
            let path = p.string()?;
            let path = if path.is_empty() { None } else { Some(store_path(&path, path_at)?) };
            p.expect(b",", "`,`")?;
            let hash_algo = p.string()?;
            p.expect(b",", "`,`")?;
            let hash = p.string()?;
            p.expect(b")", "`)`")?;
            insert_unique(&mut outputs, name, Output { path, hash_algo, hash }, at, "output")
        })?;
        self.expect(b",", "`,`")?;
        let mut input_derivations = BTreeMap::new();
        self.list(|p| {
            let at = p.pos;
            p.expect(b"(", "`(`")?;
            let path_at = p.pos;
            let path = store_path(&p.string()?, path_at)?;
            p.expect(b",", "`,`")?;
            let mut outs = BTreeSet::new();
            p.list(|p| {
                outs.insert(p.string()?);
                Ok(())
            })?;
            p.expect(b")", "`)`")?;
            if input_derivations.insert(path.clone(), outs).is_some() {
                return Err(DerivationError::Duplicate {
                    offset: at,
                    what: "input derivation",
                    key: path.to_string(),
                });
            }
            Ok(())
        })?;
        self.expect(b",", "`,`")?;
        let mut input_sources = BTreeSet::new();
        self.list(|p| {
            let at = p.pos;
            input_sources.insert(store_path(&p.string()?, at)?);
            Ok(())
        })?;
        self.expect(b",", "`,`")?;
        let system = self.string()?;
        self.expect(b",", "`,`")?;
        let builder = self.string()?;
        self.expect(b",", "`,`")?;
        let mut args = Vec::new();
        self.list(|p| {
            args.push(p.string()?);
            Ok(())
        })?;
        self.expect(b",", "`,`")?;
        let mut env = BTreeMap::new();
        self.list(|p| {
            let at = p.pos;
            p.expect(b"(", "`(`")?;
            let key = p.string()?;
            p.expect(b",", "`,`")?;
            let value = p.string()?;
            p.expect(b")", "`)`")?;
            insert_unique(&mut env, key, value, at, "environment variable")
        })?;
        self.expect(b")", "`)`")?;
        Ok(Derivation { outputs, input_derivations, input_sources, system, builder, args, env })
    }

    fn peek(&self) -> Option<u8> {
        self.input.get(self.pos).copied()
    }

    fn found(&self) -> String {
        match self.input.get(self.pos..).and_then(|rest| rest.utf8_chunks().next()) {
            Some(chunk) => match chunk.valid().chars().next() {
                Some(c) => format!("{c:?}"),
                None => format!("byte 0x{:02x}", chunk.invalid().first().copied().unwrap_or(0)),
            },
            None => "the end of the file".to_string(),
        }
    }

    fn expect(&mut self, token: &[u8], expected: &'static str) -> Result<(), DerivationError> {
        for &b in token {
            match self.peek() {
                Some(c) if c == b => self.pos += 1,
                Some(_) => {
                    return Err(DerivationError::Unexpected {
                        offset: self.pos,
                        expected,
                        found: self.found(),
                    });
                }
                None => return Err(DerivationError::UnexpectedEof { offset: self.pos, expected }),
            }
        }
        Ok(())
    }

    /// `[item,item,…]`
    fn list(
        &mut self,
        mut item: impl FnMut(&mut Self) -> Result<(), DerivationError>,
    ) -> Result<(), DerivationError> {
        self.expect(b"[", "`[`")?;
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(());
        }
        loop {
            item(self)?;
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(());
                }
                Some(_) => {
                    return Err(DerivationError::Unexpected {
                        offset: self.pos,
                        expected: "`,` or `]`",
                        found: self.found(),
                    });
                }
                None => {
                    return Err(DerivationError::UnexpectedEof { offset: self.pos, expected: "`,` or `]`" });
                }
            }
        }
    }

    /// `"…"` with escapes.
    fn string(&mut self) -> Result<String, DerivationError> {
        let start = self.pos;
        self.expect(b"\"", "a string")?;
        let mut bytes = Vec::new();
        loop {
            let Some(b) = self.peek() else {
                return Err(DerivationError::UnexpectedEof { offset: self.pos, expected: "`\"`" });
            };
            self.pos += 1;
            match b {
                b'"' => break,
                b'\\' => {
                    let Some(e) = self.peek() else {
                        return Err(DerivationError::UnexpectedEof {
                            offset: self.pos,
                            expected: "an escaped character",
                        });
                    };
                    self.pos += 1;
                    bytes.push(match e {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        other => other,
                    });
                }
                other => bytes.push(other),
            }
        }
        String::from_utf8(bytes).map_err(|_| DerivationError::InvalidUtf8 { offset: start })
    }
}

fn store_path(s: &str, offset: usize) -> Result<StorePath, DerivationError> {
    StorePath::from_absolute_path(s).map_err(|source| DerivationError::StorePath { offset, source })
}

fn insert_unique<V>(
    map: &mut BTreeMap<String, V>,
    key: String,
    value: V,
    offset: usize,
    what: &'static str,
) -> Result<(), DerivationError> {
    if map.contains_key(&key) {
        return Err(DerivationError::Duplicate { offset, what, key });
    }
    map.insert(key, value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUT: &str = "/nix/store/0akkfixhjqnjq2zjnbdk2ri8k8vwqjb3-vm-test-run-health";
    const DEP: &str = "/nix/store/vv3a5sfcp7whbjdjgc5jrb3n875fc7j5-nixos-test-driver-health.drv";
    const SRC: &str = "/nix/store/rs03r8rwg1jw1gg4g1wd2j7bf6wz0sji-source";

    fn sample() -> String {
        format!(
            r#"Derive([("out","{OUT}","","")],[("{DEP}",["out"])],["{SRC}"],"x86_64-linux","/bin/sh",["-c","echo \"hi\"\n\\done\t"],[("name","vm-test-run-health"),("out","{OUT}")])"#
        )
    }

    #[test]
    fn parses_all_fields() {
        let d = Derivation::parse(sample().as_bytes()).unwrap();
        assert_eq!(d.out_path().unwrap().to_string(), OUT);
        assert_eq!(d.input_derivations.len(), 1);
        let (dep, outs) = d.input_derivations.iter().next().unwrap();
        assert_eq!(dep.to_string(), DEP);
        assert_eq!(outs.iter().collect::<Vec<_>>(), ["out"]);
        assert_eq!(d.input_sources.iter().next().unwrap().to_string(), SRC);
        assert_eq!(d.system, "x86_64-linux");
        assert_eq!(d.builder, "/bin/sh");
        assert_eq!(d.args, ["-c", "echo \"hi\"\n\\done\t"]);
        assert_eq!(d.name(), Some("vm-test-run-health"));
    }

    #[test]
    fn round_trips_to_aterm() {
        let text = sample();
        assert_eq!(Derivation::parse(text.as_bytes()).unwrap().to_aterm(), text);
    }

    #[test]
    fn reports_errors_with_offsets() {
        let err = |s: &str| Derivation::parse(s.as_bytes()).unwrap_err();
        assert!(matches!(err("Derivx"), DerivationError::Unexpected { offset: 5, .. }));
        assert!(matches!(err("Derive(["), DerivationError::UnexpectedEof { offset: 8, .. }));
        assert!(matches!(
            err(r#"Derive([("out","/tmp/x","","")"#),
            DerivationError::StorePath { offset: 15, .. }
        ));
        let dup = r#"Derive([],[],[],"s","b",[],[("a","1"),("a","2")])"#;
        assert!(matches!(err(dup), DerivationError::Duplicate { offset: 38, .. }));
        let trailing = r#"Derive([],[],[],"s","b",[],[])x"#;
        assert!(matches!(err(trailing), DerivationError::Trailing { offset: 30 }));
        assert!(matches!(
            Derivation::parse(b"Derive([],[],[],\"\xff\",\"b\",[],[])").unwrap_err(),
            DerivationError::InvalidUtf8 { offset: 16 }
        ));
    }

    #[test]
    fn content_addressed_outputs_have_no_path() {
        let d = Derivation::parse(br#"Derive([("out","","r:sha256","")],[],[],"s","b",[],[])"#).unwrap();
        assert_eq!(d.outputs["out"].path, None);
        assert_eq!(d.outputs["out"].hash_algo, "r:sha256");
    }

    fn store_path() -> impl proptest::strategy::Strategy<Value = StorePath> {
        use proptest::strategy::Strategy;
        ("[0-9a-dfgh-np-sv-z]{32}", "[a-z0-9][a-z0-9.+-]{0,12}")
            .prop_map(|(h, n)| StorePath::from_base_name(&format!("{h}-{n}")).expect("valid by construction"))
    }

    fn drv_path() -> impl proptest::strategy::Strategy<Value = StorePath> {
        use proptest::strategy::Strategy;
        ("[0-9a-dfgh-np-sv-z]{32}", "[a-z0-9][a-z0-9-]{0,12}").prop_map(|(h, n)| {
            StorePath::from_base_name(&format!("{h}-{n}.drv")).expect("valid by construction")
        })
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_random_bytes(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = Derivation::parse(&bytes);
        }

        #[test]
        fn never_panics_on_mutated_derivations(
            edits in proptest::collection::vec((0usize..4096, proptest::num::u8::ANY), 1..8),
            cut in 0usize..4096,
        ) {
            let mut bytes = sample().into_bytes();
            for (at, b) in edits {
                let at = at % bytes.len();
                bytes[at] = b;
            }
            let _ = Derivation::parse(&bytes);
            let cut = cut % (bytes.len() + 1);
            let _ = Derivation::parse(&bytes[..cut]);
        }

        #[test]
        fn structures_round_trip(
            outputs in proptest::collection::btree_map("[a-z]{1,8}", (proptest::option::of(store_path()), "[a-z0-9:]{0,8}"), 0..4),
            inputs in proptest::collection::btree_map(drv_path(), proptest::collection::btree_set("[a-z]{1,5}", 0..3), 0..4),
            sources in proptest::collection::btree_set(store_path(), 0..4),
            args in proptest::collection::vec("\\PC{0,12}", 0..4),
        ) {
            let d = Derivation {
                outputs: outputs
                    .into_iter()
                    .map(|(name, (path, algo))| (name, Output { path, hash_algo: algo, hash: String::new() }))
                    .collect(),
                input_derivations: inputs,
                input_sources: sources,
                system: "x86_64-linux".into(),
                builder: "/bin/sh".into(),
                args,
                env: BTreeMap::new(),
            };
            proptest::prop_assert_eq!(Derivation::parse(d.to_aterm().as_bytes()).unwrap(), d);
        }

        #[test]
        fn escapes_round_trip(value in "\\PC*") {
            let d = Derivation {
                outputs: BTreeMap::new(),
                input_derivations: BTreeMap::new(),
                input_sources: BTreeSet::new(),
                system: value.clone(),
                builder: "/bin/sh".into(),
                args: vec![value.clone(), "\n\r\t\\\"".into()],
                env: [(value.clone(), value)].into_iter().collect(),
            };
            proptest::prop_assert_eq!(Derivation::parse(d.to_aterm().as_bytes()).unwrap(), d);
        }
    }
}
