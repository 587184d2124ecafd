//! JSON into a [`Value`], with duplicate-key and depth detection.
//!
//! `serde_json::Value` silently keeps the last of two equal keys; a browser and a server that
//! read different copies could disagree, so a duplicate is an error here. The visitor tracks
//! depth itself (serde_json's own recursion limit of 128 is a backstop).

use std::cell::RefCell;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use super::{as_text, MetaError, Value};
use crate::Limits;

/// Parse a JSON metadata file.
pub fn parse(bytes: &[u8], limits: &Limits) -> Result<Value, MetaError> {
    let text = as_text(bytes)?;
    if text.trim().is_empty() {
        return Err(MetaError::Empty);
    }
    let failure = RefCell::new(None);
    let ctx = Ctx {
        max_depth: limits.max_nesting_depth,
        failure: &failure,
    };
    let mut de = serde_json::Deserializer::from_str(text);
    let result = Seed {
        ctx: &ctx,
        depth: 0,
        path: String::new(),
    }
    .deserialize(&mut de)
    .and_then(|v| de.end().map(|()| v));
    match result {
        Ok(v) => Ok(v),
        Err(e) => Err(failure.into_inner().unwrap_or_else(|| {
            if e.to_string().starts_with("recursion limit exceeded") {
                MetaError::TooDeep {
                    limit: limits.max_nesting_depth,
                }
            } else {
                MetaError::Syntax(e.to_string())
            }
        })),
    }
}

struct Ctx<'a> {
    max_depth: u64,
    /// The structured reason for a failure the visitor raised (serde errors are strings).
    failure: &'a RefCell<Option<MetaError>>,
}

struct Seed<'c, 'a> {
    ctx: &'c Ctx<'a>,
    depth: u64,
    path: String,
}

impl<'de> DeserializeSeed<'de> for Seed<'_, '_> {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl Seed<'_, '_> {
    fn fail<E: de::Error>(&self, err: MetaError) -> E {
        let msg = err.to_string();
        *self.ctx.failure.borrow_mut() = Some(err);
        E::custom(msg)
    }

    fn child(&self, key: &str) -> Result<Seed<'_, '_>, MetaError> {
        let depth = self.depth + 1;
        if depth > self.ctx.max_depth {
            return Err(MetaError::TooDeep {
                limit: self.ctx.max_depth,
            });
        }
        let path = if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        };
        Ok(Seed {
            ctx: self.ctx,
            depth,
            path,
        })
    }
}

impl<'de> Visitor<'de> for Seed<'_, '_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Int(v.into()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Str(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::Str(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        loop {
            let child = self
                .child(&format!("[{}]", items.len()))
                .map_err(|e| self.fail(e))?;
            match seq.next_element_seed(child)? {
                Some(v) => items.push(v),
                None => break,
            }
        }
        Ok(Value::Seq(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries: Vec<(String, Value)> = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            if entries.iter().any(|(k, _)| *k == key) {
                let path = self.child(&key).map(|c| c.path).unwrap_or(key);
                return Err(self.fail(MetaError::DuplicateKey { path }));
            }
            let child = self.child(&key).map_err(|e| self.fail(e))?;
            let value = map.next_value_seed(child)?;
            entries.push((key, value));
        }
        Ok(Value::Map(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Value, MetaError> {
        parse(s.as_bytes(), &Limits::default())
    }

    #[test]
    fn numbers_keep_their_kind() {
        let v = p(r#"{"a": 224, "b": 224.0, "c": "224", "d": true}"#).unwrap();
        assert_eq!(v.get("a"), Some(&Value::Int(224)));
        assert_eq!(v.get("b"), Some(&Value::Float(224.0)));
        assert_eq!(v.get("c"), Some(&Value::Str("224".into())));
        assert_eq!(v.get("d"), Some(&Value::Bool(true)));
    }

    #[test]
    fn duplicate_keys_are_found_with_their_path() {
        assert_eq!(
            p(r#"{"x": {"a": 1, "a": 2}}"#),
            Err(MetaError::DuplicateKey { path: "x.a".into() })
        );
    }

    #[test]
    fn depth_is_limited() {
        let deep = format!("{}{}", "[".repeat(70), "]".repeat(70));
        assert_eq!(p(&deep), Err(MetaError::TooDeep { limit: 64 }));
        let very_deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(p(&very_deep), Err(MetaError::TooDeep { limit: 64 }));
        assert!(p(&format!("{}{}", "[".repeat(60), "]".repeat(60))).is_ok());
    }

    #[test]
    fn empty_bad_utf8_and_syntax() {
        assert_eq!(p("  \n"), Err(MetaError::Empty));
        assert_eq!(
            parse(b"{\"a\": \"\xff\"}", &Limits::default()),
            Err(MetaError::NotUtf8 { offset: 7 })
        );
        assert!(matches!(p("{\"a\": }"), Err(MetaError::Syntax(_))));
        assert!(matches!(p("{} {}"), Err(MetaError::Syntax(_))));
    }
}
