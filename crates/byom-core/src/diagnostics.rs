//! The vocabulary of findings: [`Severity`], [`Code`], [`Category`], [`Rule`] and [`Issue`].
//!
//! A leaf module on purpose: it imports nothing from the rest of the crate, so every other
//! module (the archive walk, the `.pt` reader, the rule checks, the report) can depend on it
//! without depending on each other. `report` and `rules` re-export these types, so
//! `crate::report::Issue` and `crate::rules::Rule` keep working.

use std::fmt;

use serde::ser::SerializeStruct;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// How bad an issue is. An error means "this package cannot work as declared"; a warning
/// means "it can, but something is likely wrong".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// What a finding concerns, derived from its code's hundred (see [`Code::category`]); faces
/// group and colour issues by it instead of pattern-matching codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Category {
    /// `BYOM0xx`: the archive itself (gzip, tar, hostile members, limits).
    Archive,
    /// `BYOM1xx`: package layout (required files, the `.pt`).
    Layout,
    /// `BYOM2xx`: `config.yaml`.
    Config,
    /// `BYOM3xx`: `mochi.json`.
    Mochi,
    /// `BYOM4xx`: `export_artifacts/manifest.json`.
    Manifest,
    /// `BYOM5xx`: agreement between files (shapes, classes, pre- and post-processing).
    Agreement,
    /// The `BYOM6xx` codes that say loading the `.pt` is unsafe or its structure cannot be
    /// trusted (see [`SAFETY_CODES`]).
    Safety,
    /// The other `BYOM6xx` codes: what the `.pt` is (kind, inventory, architecture).
    Model,
    /// `BYOM7xx`: torch version compatibility.
    Compatibility,
}

impl Category {
    /// The lowercase name used in JSON (`"agreement"`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Category::Archive => "archive",
            Category::Layout => "layout",
            Category::Config => "config",
            Category::Mochi => "mochi",
            Category::Manifest => "manifest",
            Category::Agreement => "agreement",
            Category::Safety => "safety",
            Category::Model => "model",
            Category::Compatibility => "compatibility",
        }
    }
}

/// The `BYOM6xx` numbers that are [`Category::Safety`]: not a PyTorch file, pickled module,
/// dangerous or disallowed global, corrupt file, storage or zip-name mismatch, limit exceeded.
/// The 6xx hundred mixes safety and description for historical reasons (codes are never
/// renumbered), so this one list is the exception to "the hundred decides".
pub const SAFETY_CODES: &[u16] = &[600, 601, 602, 603, 604, 605, 606, 610];

/// A stable rule code `BYOM###`, stored as its number so it is `Copy` and cheap to compare.
/// Only the hundreds that have a [`Category`] (`000`–`799`) exist; a malformed code is
/// rejected by [`Code::new`] (at compile time in a `const`) and by [`Code::parse`].
/// Serialises as the string `"BYOM123"`, exactly as the old `String` field did.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Code(u16);

/// Every code's text, built at compile time, so [`Code::as_str`] can hand out a `&'static str`.
static CODE_TEXT: [[u8; 7]; Code::LIMIT as usize] = {
    let mut t = [*b"BYOM000"; Code::LIMIT as usize];
    let mut n = 0;
    while n < Code::LIMIT as usize {
        t[n][4] = b'0' + (n / 100) as u8;
        t[n][5] = b'0' + (n / 10 % 10) as u8;
        t[n][6] = b'0' + (n % 10) as u8;
        n += 1;
    }
    t
};

impl Code {
    /// One past the highest number with a category.
    const LIMIT: u16 = 800;

    /// The code spelled `text`; panics if it is not `BYOM` and three digits below 800. In a
    /// `const` (as every rule is) that panic is a compile error.
    pub const fn new(text: &str) -> Code {
        match Code::parse(text) {
            Some(c) => c,
            None => panic!("a rule code is BYOM followed by three digits, 000 to 799"),
        }
    }

    /// The code spelled `text`, or `None` if it is malformed or out of range.
    pub const fn parse(text: &str) -> Option<Code> {
        let b = text.as_bytes();
        if b.len() != 7 || b[0] != b'B' || b[1] != b'Y' || b[2] != b'O' || b[3] != b'M' {
            return None;
        }
        let mut n: u16 = 0;
        let mut i = 4;
        while i < 7 {
            if !b[i].is_ascii_digit() {
                return None;
            }
            n = n * 10 + (b[i] - b'0') as u16;
            i += 1;
        }
        if n >= Code::LIMIT {
            return None;
        }
        Some(Code(n))
    }

    /// The number after `BYOM` (`123` for `BYOM123`).
    pub const fn number(self) -> u16 {
        self.0
    }

    /// `"BYOM123"`.
    pub fn as_str(&self) -> &'static str {
        // The table holds only ASCII digits and letters, so this cannot fail.
        std::str::from_utf8(&CODE_TEXT[self.0 as usize]).unwrap_or("BYOM???")
    }

    /// What the code concerns: its hundred, except the safety subset of `BYOM6xx`.
    pub const fn category(self) -> Category {
        match self.0 / 100 {
            0 => Category::Archive,
            1 => Category::Layout,
            2 => Category::Config,
            3 => Category::Mochi,
            4 => Category::Manifest,
            5 => Category::Agreement,
            6 => {
                let mut i = 0;
                while i < SAFETY_CODES.len() {
                    if SAFETY_CODES[i] == self.0 {
                        return Category::Safety;
                    }
                    i += 1;
                }
                Category::Model
            }
            // `parse` admits nothing at or above LIMIT (800).
            _ => Category::Compatibility,
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl fmt::Debug for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

impl AsRef<str> for Code {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

// Comparisons with text keep `issue.code == "BYOM501"` and `issue.code == rules::X.code`
// (a `&'static str`) working.
impl PartialEq<str> for Code {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Code {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<String> for Code {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<Code> for &str {
    fn eq(&self, other: &Code) -> bool {
        *self == other.as_str()
    }
}

impl PartialEq<Code> for String {
    fn eq(&self, other: &Code) -> bool {
        self == other.as_str()
    }
}

impl From<Code> for String {
    fn from(c: Code) -> String {
        c.as_str().to_string()
    }
}

impl Serialize for Code {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Code {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Code, D::Error> {
        let text = std::borrow::Cow::<'de, str>::deserialize(d)?;
        Code::parse(&text).ok_or_else(|| {
            serde::de::Error::custom(format!("{text:?} is not a rule code (BYOM000 to BYOM799)"))
        })
    }
}

/// A rule's identity and documentation. The check itself lives beside the constant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Rule {
    /// Stable code, `BYOM###`. Never reused for another meaning. Text so rule constants read
    /// as the docs do; [`crate::rules`] checks every registered code at compile time and
    /// [`Rule::code`] gives the typed [`Code`].
    pub code: &'static str,
    /// Short kebab-case name, e.g. `missing-required-file`.
    pub name: &'static str,
    pub severity: Severity,
    /// One line: what the rule checks.
    pub summary: &'static str,
    /// How to fix it, shown with every issue.
    pub hint: &'static str,
    /// Markdown: cause, example, fix.
    pub doc: &'static str,
}

impl Rule {
    /// The typed code. Panics only for a rule whose code is malformed, which the compile-time
    /// check in [`crate::rules`] and the `every_rule_code_is_typed` test exclude.
    pub const fn code(&self) -> Code {
        Code::new(self.code)
    }

    /// What the rule concerns.
    pub const fn category(&self) -> Category {
        self.code().category()
    }

    /// An issue of this rule about `file` with a specific message.
    pub fn issue(&self, file: Option<&str>, message: impl Into<String>) -> Issue {
        Issue {
            code: self.code(),
            severity: self.severity,
            message: message.into(),
            file: file.map(str::to_string),
            hint: self.hint.to_string(),
        }
    }

    /// Like [`Rule::issue`] but with a hint specific to this occurrence.
    pub fn issue_with_hint(
        &self,
        file: Option<&str>,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) -> Issue {
        Issue {
            hint: hint.into(),
            ..self.issue(file, message)
        }
    }
}

/// One finding, with a stable code (`BYOM###`), the file it concerns and how to fix it.
/// Serialised with its [`Category`] (derived from the code, so it is never stored and cannot
/// disagree with it); deserialising ignores that field.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Issue {
    pub code: Code,
    pub severity: Severity,
    pub message: String,
    /// Package-relative path of the file concerned (`None` for the archive as a whole).
    pub file: Option<String>,
    pub hint: String,
}

impl Issue {
    /// What the issue concerns.
    pub const fn category(&self) -> Category {
        self.code.category()
    }
}

impl Serialize for Issue {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("Issue", 6)?;
        st.serialize_field("code", &self.code)?;
        st.serialize_field("category", &self.category())?;
        st.serialize_field("severity", &self.severity)?;
        st.serialize_field("message", &self.message)?;
        st.serialize_field("file", &self.file)?;
        st.serialize_field("hint", &self.hint)?;
        st.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_accepts_only_byom_and_three_digits_below_800() {
        assert_eq!(Code::parse("BYOM000").map(Code::number), Some(0));
        assert_eq!(Code::parse("BYOM799").map(Code::number), Some(799));
        for bad in [
            "",
            "BYOM",
            "BYOM12",
            "BYOM1234",
            "byom123",
            "BYOM12a",
            "BYOX123",
            "BYOM800",
            "BYOM999",
            " BYOM123",
            "BYOM-12",
            "BYOM١٢٣",
        ] {
            assert_eq!(Code::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    #[should_panic(expected = "three digits")]
    fn new_rejects_a_malformed_code() {
        let text = String::from("BYOM12");
        let _ = Code::new(&text);
    }

    #[test]
    fn text_round_trips_for_every_code() {
        for n in 0..Code::LIMIT {
            let text = format!("BYOM{n:03}");
            let code = Code::parse(&text).unwrap();
            assert_eq!(code.as_str(), text);
            assert_eq!(code.to_string(), text);
            assert!(code == text.as_str() && text == code);
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{text}\""));
            assert_eq!(serde_json::from_str::<Code>(&json).unwrap(), code);
        }
        assert!(serde_json::from_str::<Code>("\"BYOM8000\"").is_err());
    }

    #[test]
    fn category_follows_the_hundred_with_the_safety_subset_of_6xx() {
        let cat = |s: &str| Code::parse(s).unwrap().category();
        assert_eq!(cat("BYOM012"), Category::Archive);
        assert_eq!(cat("BYOM101"), Category::Layout);
        assert_eq!(cat("BYOM201"), Category::Config);
        assert_eq!(cat("BYOM308"), Category::Mochi);
        assert_eq!(cat("BYOM401"), Category::Manifest);
        assert_eq!(cat("BYOM510"), Category::Agreement);
        assert_eq!(cat("BYOM602"), Category::Safety);
        assert_eq!(cat("BYOM610"), Category::Safety);
        assert_eq!(cat("BYOM609"), Category::Model);
        assert_eq!(cat("BYOM701"), Category::Compatibility);
        assert!(SAFETY_CODES.iter().all(|&n| n / 100 == 6));
    }

    #[test]
    fn issue_json_is_the_old_shape_plus_category() {
        let issue = Issue {
            code: Code::new("BYOM501"),
            severity: Severity::Error,
            message: "m".into(),
            file: None,
            hint: "h".into(),
        };
        let json = serde_json::to_string(&issue).unwrap();
        assert_eq!(
            json,
            r#"{"code":"BYOM501","category":"agreement","severity":"error","message":"m","file":null,"hint":"h"}"#
        );
        // Reports stored before `category` existed still read back, and the field is ignored.
        let old = r#"{"code":"BYOM501","severity":"error","message":"m","file":null,"hint":"h"}"#;
        assert_eq!(serde_json::from_str::<Issue>(old).unwrap(), issue);
        assert_eq!(serde_json::from_str::<Issue>(&json).unwrap(), issue);
    }
}
