//! YAML into a [`Value`], through yaml-rust2's low-level event parser.
//!
//! The event level lets us refuse a hostile file before it costs memory: nesting depth is
//! checked as collections open, alias references are counted (and their expansion sized) before
//! anything is copied, and duplicate keys are errors instead of "last one wins". Plain scalars
//! are resolved the way PyYAML's `safe_load` (what the guide's users run) resolves them, so
//! `yes` is a boolean and `224.0` a float.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::TScalarStyle;

use super::{as_text, MetaError, Value};
use crate::Limits;

/// Parse a YAML metadata file (one document).
pub fn parse(bytes: &[u8], limits: &Limits) -> Result<Value, MetaError> {
    let text = as_text(bytes)?;
    let mut b = Builder {
        limits,
        stack: Vec::new(),
        root: None,
        anchors: HashMap::new(),
        aliases: 0,
        expanded_nodes: 0,
        documents: 0,
    };
    let mut parser = Parser::new_from_str(text);
    loop {
        let (event, _mark) = parser.next_token().map_err(|e| {
            // yaml-rust2's scanner has its own nesting guard for flow collections: that is
            // a depth problem, not a syntax error.
            if e.info().contains("recursion limit exceeded") {
                MetaError::TooDeep {
                    limit: limits.max_nesting_depth,
                }
            } else {
                MetaError::Syntax(e.to_string())
            }
        })?;
        match event {
            Event::StreamEnd => break,
            Event::DocumentStart => {
                b.documents += 1;
                if b.documents > 1 {
                    return Err(MetaError::Syntax(
                        "expected a single YAML document, found several ('---')".into(),
                    ));
                }
            }
            Event::Scalar(text, style, anchor, tag) => {
                let value = if let Some(tag) = tag {
                    resolve_tagged(&text, &tag.suffix)
                } else {
                    resolve(&text, style)
                };
                b.push_scalar(text, value, anchor)?;
            }
            Event::SequenceStart(anchor, _) => b.open(Frame::Seq(Vec::new()), anchor)?,
            Event::MappingStart(anchor, _) => b.open(Frame::Map(Vec::new(), None), anchor)?,
            Event::SequenceEnd | Event::MappingEnd => b.close()?,
            Event::Alias(id) => b.alias(id)?,
            Event::Nothing | Event::StreamStart | Event::DocumentEnd => {}
        }
    }
    match b.root {
        None | Some(Value::Null) => Err(MetaError::Empty),
        Some(v) => Ok(v),
    }
}

enum Frame {
    Seq(Vec<Value>),
    /// Entries so far and the key waiting for its value.
    Map(Vec<(String, Value)>, Option<String>),
}

struct Builder<'l> {
    limits: &'l Limits,
    /// Open collections with their anchor id (0 = none).
    stack: Vec<(Frame, usize)>,
    root: Option<Value>,
    /// Anchored values with their node count and depth, for sizing alias expansions.
    anchors: HashMap<usize, (Value, u64, u64)>,
    aliases: u64,
    expanded_nodes: u64,
    documents: u32,
}

impl Builder<'_> {
    /// Most nodes alias expansion may add: an eighth of the metadata size cap in nodes. Enough
    /// for any real config that reuses a block, far below what an alias bomb needs.
    fn max_expanded_nodes(&self) -> u64 {
        self.limits.max_metadata_bytes / 8
    }

    fn path(&self) -> String {
        let mut parts = Vec::new();
        for (frame, _) in &self.stack {
            match frame {
                Frame::Seq(items) => parts.push(format!("[{}]", items.len())),
                Frame::Map(_, Some(k)) => parts.push(k.clone()),
                Frame::Map(_, None) => {}
            }
        }
        parts.join(".")
    }

    fn open(&mut self, frame: Frame, anchor: usize) -> Result<(), MetaError> {
        if self.expecting_key() {
            return Err(MetaError::Syntax(format!(
                "a list or mapping used as a mapping key at '{}' is not supported",
                self.path()
            )));
        }
        if self.stack.len() as u64 >= self.limits.max_nesting_depth {
            return Err(MetaError::TooDeep {
                limit: self.limits.max_nesting_depth,
            });
        }
        self.stack.push((frame, anchor));
        Ok(())
    }

    fn close(&mut self) -> Result<(), MetaError> {
        let Some((frame, anchor)) = self.stack.pop() else {
            return Err(MetaError::Syntax("unbalanced collection end".into()));
        };
        let value = match frame {
            Frame::Seq(items) => Value::Seq(items),
            Frame::Map(entries, _) => Value::Map(entries),
        };
        self.remember(anchor, &value);
        self.push_value(value)
    }

    fn expecting_key(&self) -> bool {
        matches!(self.stack.last(), Some((Frame::Map(_, None), _)))
    }

    fn push_scalar(&mut self, text: String, value: Value, anchor: usize) -> Result<(), MetaError> {
        self.remember(anchor, &value);
        if self.expecting_key() {
            return self.push_key(text);
        }
        self.push_value(value)
    }

    fn push_key(&mut self, key: String) -> Result<(), MetaError> {
        let prefix = self.path();
        if let Some((Frame::Map(entries, pending), _)) = self.stack.last_mut() {
            if entries.iter().any(|(k, _)| *k == key) {
                let path = if prefix.is_empty() {
                    key
                } else {
                    format!("{prefix}.{key}")
                };
                return Err(MetaError::DuplicateKey { path });
            }
            *pending = Some(key);
        }
        Ok(())
    }

    fn push_value(&mut self, value: Value) -> Result<(), MetaError> {
        match self.stack.last_mut() {
            None => {
                self.root = Some(value);
                Ok(())
            }
            Some((Frame::Seq(items), _)) => {
                items.push(value);
                Ok(())
            }
            Some((Frame::Map(entries, pending), _)) => match pending.take() {
                Some(key) => {
                    entries.push((key, value));
                    Ok(())
                }
                None => Err(MetaError::Syntax(
                    "a mapping key that is not a scalar".into(),
                )),
            },
        }
    }

    fn remember(&mut self, anchor: usize, value: &Value) {
        if anchor != 0 {
            let (nodes, depth) = measure(value);
            self.anchors.insert(anchor, (value.clone(), nodes, depth));
        }
    }

    fn alias(&mut self, id: usize) -> Result<(), MetaError> {
        self.aliases += 1;
        if self.aliases > self.limits.max_yaml_aliases {
            return Err(MetaError::AliasBomb(format!(
                "more than {} YAML alias references (limit max_yaml_aliases)",
                self.limits.max_yaml_aliases
            )));
        }
        let Some((value, nodes, depth)) = self.anchors.get(&id) else {
            return Err(MetaError::Syntax("alias to an unknown anchor".into()));
        };
        self.expanded_nodes = self.expanded_nodes.saturating_add(*nodes);
        if self.expanded_nodes > self.max_expanded_nodes() {
            return Err(MetaError::AliasBomb(format!(
                "YAML aliases expand to more than {} values (an alias bomb)",
                self.max_expanded_nodes()
            )));
        }
        if self.stack.len() as u64 + depth > self.limits.max_nesting_depth {
            return Err(MetaError::TooDeep {
                limit: self.limits.max_nesting_depth,
            });
        }
        let value = value.clone();
        if self.expecting_key() {
            return match value {
                Value::Seq(_) | Value::Map(_) => Err(MetaError::Syntax(
                    "an alias to a collection used as a key".into(),
                )),
                Value::Str(s) => self.push_key(s),
                other => self.push_key(other.to_string()),
            };
        }
        self.push_value(value)
    }
}

/// Node count and depth of a value (bounded by the depth limit, so recursion is safe).
fn measure(value: &Value) -> (u64, u64) {
    match value {
        Value::Seq(items) => items.iter().fold((1, 1), |(n, d), v| {
            let (vn, vd) = measure(v);
            (n + vn, d.max(vd + 1))
        }),
        Value::Map(entries) => entries.iter().fold((1, 1), |(n, d), (_, v)| {
            let (vn, vd) = measure(v);
            (n + vn, d.max(vd + 1))
        }),
        _ => (1, 0),
    }
}

/// A scalar with an explicit standard tag (`!!str 224`, `!!int "3"`).
fn resolve_tagged(text: &str, suffix: &str) -> Value {
    match suffix {
        "str" => Value::Str(text.to_string()),
        "int" | "float" | "bool" | "null" => resolve(text, TScalarStyle::Plain),
        _ => Value::Str(text.to_string()),
    }
}

/// Plain scalars are typed like PyYAML's `safe_load` does; quoted ones are always strings.
fn resolve(text: &str, style: TScalarStyle) -> Value {
    if style != TScalarStyle::Plain {
        return Value::Str(text.to_string());
    }
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" => {
            return Value::Bool(true)
        }
        "false" | "False" | "FALSE" | "no" | "No" | "NO" | "off" | "Off" | "OFF" => {
            return Value::Bool(false)
        }
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Value::Float(f64::INFINITY)
        }
        "-.inf" | "-.Inf" | "-.INF" => return Value::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Value::Float(f64::NAN),
        _ => {}
    }
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    if !digits.is_empty() && digits.bytes().all(|c| c.is_ascii_digit() || c == b'_') {
        let clean: String = text.chars().filter(|c| *c != '_').collect();
        if let Ok(i) = clean.parse::<i128>() {
            return Value::Int(i);
        }
    }
    if let Some(hex) = digits.strip_prefix("0x") {
        if let Ok(i) = i128::from_str_radix(hex, 16) {
            return Value::Int(if text.starts_with('-') { -i } else { i });
        }
    }
    let looks_float = digits.bytes().any(|c| c.is_ascii_digit())
        && digits
            .bytes()
            .all(|c| c.is_ascii_digit() || matches!(c, b'.' | b'e' | b'E' | b'-' | b'+' | b'_'));
    if looks_float {
        let clean: String = text.chars().filter(|c| *c != '_').collect();
        if let Ok(f) = clean.parse::<f64>() {
            return Value::Float(f);
        }
    }
    Value::Str(text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Value, MetaError> {
        parse(s.as_bytes(), &Limits::default())
    }

    #[test]
    fn scalars_resolve_like_pyyaml() {
        let v = p("a: 224\nb: 224.0\nc: \"224\"\nd: true\ne: yes\nf: ~\ng: '7'\nh: abc\n").unwrap();
        assert_eq!(v.get("a"), Some(&Value::Int(224)));
        assert_eq!(v.get("b"), Some(&Value::Float(224.0)));
        assert_eq!(v.get("c"), Some(&Value::Str("224".into())));
        assert_eq!(v.get("d"), Some(&Value::Bool(true)));
        assert_eq!(v.get("e"), Some(&Value::Bool(true)));
        assert_eq!(v.get("f"), Some(&Value::Null));
        assert_eq!(v.get("g"), Some(&Value::Str("7".into())));
        assert_eq!(v.get("h"), Some(&Value::Str("abc".into())));
    }

    #[test]
    fn nested_and_lists() {
        let v = p("dataset:\n  image_width: 640\n  class_names: [a, b]\n").unwrap();
        assert_eq!(v.path(&["dataset", "image_width"]), Some(&Value::Int(640)));
        assert_eq!(
            v.path(&["dataset", "class_names"])
                .and_then(Value::as_seq)
                .map(<[Value]>::len),
            Some(2)
        );
    }

    #[test]
    fn duplicate_key() {
        assert_eq!(
            p("dataset:\n  image_width: 1\n  image_width: 2\n"),
            Err(MetaError::DuplicateKey {
                path: "dataset.image_width".into()
            })
        );
    }

    #[test]
    fn billion_laughs_is_refused() {
        let mut s = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let prev = i - 1;
            s.push_str(&format!(
                "a{i}: &a{i} [*a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}]\n"
            ));
        }
        assert!(matches!(p(&s), Err(MetaError::AliasBomb(_))), "{:?}", p(&s));
        // Few aliases, each big: the expansion size cap catches it.
        let big: Vec<String> = (0..20_000).map(|i| i.to_string()).collect();
        let mut s = format!("a: &a [{}]\n", big.join(", "));
        for i in 0..10 {
            s.push_str(&format!("b{i}: *a\n"));
        }
        assert!(matches!(p(&s), Err(MetaError::AliasBomb(_))));
        // A normal reuse of a block is fine.
        assert!(p("base: &b {w: 1}\nother: *b\n").is_ok());
    }

    #[test]
    fn depth_limit() {
        let very_deep = format!("a: {}{}", "[".repeat(500), "]".repeat(500));
        assert_eq!(p(&very_deep), Err(MetaError::TooDeep { limit: 64 }));
        let deep = format!("{}{}", "[".repeat(65), "]".repeat(65));
        assert_eq!(p(&deep), Err(MetaError::TooDeep { limit: 64 }));
        let ok = format!("{}{}", "[".repeat(64), "]".repeat(64));
        assert!(p(&ok).is_ok());
    }

    #[test]
    fn empty_and_invalid() {
        assert_eq!(p(""), Err(MetaError::Empty));
        assert_eq!(p("# only a comment\n"), Err(MetaError::Empty));
        assert!(matches!(p("a: [1, 2\n"), Err(MetaError::Syntax(_))));
        assert!(matches!(p("a: 1\n---\nb: 2\n"), Err(MetaError::Syntax(_))));
        assert_eq!(
            parse(b"a: \xc3\x28", &Limits::default()),
            Err(MetaError::NotUtf8 { offset: 3 })
        );
    }
}
