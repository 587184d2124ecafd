//! A metadata value that remembers exactly what the author wrote.

use std::fmt;

/// One YAML/JSON value. Numbers keep their kind so that `224`, `224.0`, `"224"` and `true`
/// can be told apart; mappings keep key order (messages quote keys in the author's order).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    /// A whole number as written (`224`, `-1`), wide enough for any JSON integer.
    Int(i128),
    /// A number with a fraction or exponent (`224.0`, `1e3`).
    Float(f64),
    Str(String),
    Seq(Vec<Value>),
    Map(Vec<(String, Value)>),
}

impl Value {
    /// The value under `key` when this is a mapping.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Map(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// Follow a path of keys.
    pub fn path(&self, keys: &[&str]) -> Option<&Value> {
        keys.iter().try_fold(self, |v, k| v.get(k))
    }

    pub fn as_seq(&self) -> Option<&[Value]> {
        match self {
            Value::Seq(items) => Some(items),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn is_map(&self) -> bool {
        matches!(self, Value::Map(_))
    }

    /// A strictly positive whole number (not a string, float or boolean), as the guide requires.
    pub fn as_positive_int(&self) -> Option<u64> {
        match self {
            Value::Int(i) if *i > 0 => u64::try_from(*i).ok(),
            _ => None,
        }
    }

    /// Any number, for thresholds and normalisation constants where floats are expected.
    pub fn as_number(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            _ => None,
        }
    }

    /// A list of positive integers (a shape), or `None` if any element is something else.
    pub fn as_shape(&self) -> Option<Vec<i64>> {
        self.as_seq()?
            .iter()
            .map(|v| v.as_positive_int().and_then(|n| i64::try_from(n).ok()))
            .collect()
    }

    /// The value as JSON, for consumers that copy declarations verbatim (the compile server's
    /// `deployment.json`). Mapping order is kept; a whole number beyond 64 bits becomes the
    /// nearest float and a non-finite float `null`, as JSON has no other spelling for them.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match self {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => {
                if let Ok(n) = i64::try_from(*i) {
                    J::from(n)
                } else if let Ok(n) = u64::try_from(*i) {
                    J::from(n)
                } else {
                    serde_json::Number::from_f64(*i as f64).map_or(J::Null, J::Number)
                }
            }
            Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
            Value::Str(s) => J::String(s.clone()),
            Value::Seq(items) => J::Array(items.iter().map(Value::to_json).collect()),
            Value::Map(entries) => J::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.clone(), v.to_json()))
                    .collect(),
            ),
        }
    }

    /// Short description of the kind of value, for messages ("a string", "a float").
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a float",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}

/// JSON-like rendering, so `"224"` shows its quotes and `224.0` its fraction in messages.
impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("null"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) if x.is_finite() && x.fract() == 0.0 && x.abs() < 1e16 => {
                write!(f, "{x:.1}")
            }
            Value::Float(x) => write!(f, "{x}"),
            Value::Str(s) => {
                let short: String = s.chars().take(80).collect();
                let ell = if short.len() < s.len() { "…" } else { "" };
                write!(f, "{:?}", format!("{short}{ell}"))
            }
            Value::Seq(items) => {
                f.write_str("[")?;
                for (i, v) in items.iter().enumerate() {
                    if i == 8 {
                        f.write_str(", …")?;
                        break;
                    }
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{v}")?;
                }
                f.write_str("]")
            }
            Value::Map(_) => f.write_str("{…}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Value;

    #[test]
    fn to_json_keeps_kinds_and_order() {
        let v = Value::Map(vec![
            ("b".into(), Value::Int(224)),
            ("a".into(), Value::Float(0.5)),
            ("s".into(), Value::Str("224".into())),
            ("big".into(), Value::Int(i128::from(u64::MAX) + 1)),
            ("nan".into(), Value::Float(f64::NAN)),
            ("l".into(), Value::Seq(vec![Value::Bool(true), Value::Null])),
        ]);
        let j = v.to_json();
        assert_eq!(
            j.to_string(),
            r#"{"b":224,"a":0.5,"s":"224","big":1.8446744073709552e+19,"nan":null,"l":[true,null]}"#
        );
    }
}
