//! The PyTorch release that first has each ATen operator, argument and positional-argument
//! count: the table `tools/torch_ops/extract.py` writes from the schema lists the releases
//! themselves ship (`op_history.txt`, checked in beside this file; docs/pt-inspection.md says
//! how to regenerate it). Read here so that the minimum torch of a TorchScript file follows
//! from the operators its code calls, not from a hand-kept list.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use crate::torch_version::TorchVersion;

/// The generated table (format in its header comment and in [`parse`]).
const TABLE: &str = include_str!("op_history.txt");

/// What the table knows about one `aten::` operator name.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct OpHistory {
    /// The first release that has the operator; `None` when it is already in the oldest release
    /// of the table, or when the name cannot be dated (also registered outside ATen's native
    /// functions, e.g. `aten::copy.t`, list `copy()`).
    pub since: Option<TorchVersion>,
    /// Arguments added after the operator, with the first release where some overload takes each.
    pub args: Vec<(&'static str, TorchVersion)>,
    /// `(n, release)`: `n` positional arguments are first accepted in `release` (ascending `n`).
    pub arity: Vec<(usize, TorchVersion)>,
}

impl OpHistory {
    /// The release from which the operator accepts `n` positional arguments, when later than
    /// the operator itself.
    pub fn arity_since(&self, n: usize) -> Option<TorchVersion> {
        self.arity
            .iter()
            .take_while(|(k, _)| *k <= n)
            .map(|(_, v)| *v)
            .max()
    }

    /// The release from which the operator takes argument `name`, when later than the operator.
    pub fn arg_since(&self, name: &str) -> Option<TorchVersion> {
        self.args.iter().find(|(a, _)| *a == name).map(|(_, v)| *v)
    }
}

/// The parsed table.
#[derive(Debug, Default)]
pub struct OpTable {
    /// The oldest release read: everything in it is "this release or earlier".
    pub oldest: Option<TorchVersion>,
    ops: BTreeMap<&'static str, OpHistory>,
}

impl OpTable {
    /// What the table says about `aten::name`; `None` for an operator that is in the oldest
    /// release unchanged since, or that no release from the oldest to the newest has.
    pub fn op(&self, name: &str) -> Option<&OpHistory> {
        self.ops.get(name)
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

/// A line of the table that does not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("op_history.txt line {line}: {what}")]
pub struct TableError {
    pub line: usize,
    pub what: String,
}

/// The table shipped with the core, parsed once. A table that does not parse (a unit test
/// proves the shipped one does) gives an empty table: no operator-based requirement, never a
/// wrong one.
pub fn table() -> &'static OpTable {
    static CELL: OnceLock<OpTable> = OnceLock::new();
    CELL.get_or_init(|| parse(TABLE).unwrap_or_default())
}

/// Parse the table. Lines: `# comment`, `source …` (the wheels read; for the staleness test),
/// `[X.Y]` (a release section), and under a section `name item…` where `name` first appears in
/// that release, `~name` cannot be dated, and each item is `arg@X.Y` (argument first taken in
/// X.Y) or `#N@X.Y` (N positional arguments first accepted in X.Y).
pub fn parse(text: &'static str) -> Result<OpTable, TableError> {
    let mut out = OpTable::default();
    let mut section: Option<TorchVersion> = None;
    for (i, line) in text.lines().enumerate() {
        let err = |what: String| TableError { line: i + 1, what };
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with("source ") {
            continue;
        }
        if let Some(v) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let v: TorchVersion = v.parse().map_err(|e| err(format!("{e}")))?;
            out.oldest.get_or_insert(v);
            section = Some(v);
            continue;
        }
        let rel = section.ok_or_else(|| err("an operator before the first [release]".into()))?;
        let mut words = line.split_ascii_whitespace();
        let first = words.next().unwrap_or_default();
        let (name, dated) = match first.strip_prefix('~') {
            Some(n) => (n, false),
            None => (first, true),
        };
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(err(format!("{first:?} is not an operator name")));
        }
        let mut h = OpHistory {
            since: (dated && Some(rel) != out.oldest).then_some(rel),
            ..Default::default()
        };
        for item in words {
            let (what, v) = item
                .split_once('@')
                .ok_or_else(|| err(format!("{item:?}: expected arg@X.Y or #N@X.Y")))?;
            let v: TorchVersion = v.parse().map_err(|e| err(format!("{item:?}: {e}")))?;
            match what.strip_prefix('#') {
                Some(n) => {
                    let n = n.parse().map_err(|_| err(format!("{item:?}: bad count")))?;
                    h.arity.push((n, v));
                }
                None => h.args.push((what, v)),
            }
        }
        h.arity.sort_unstable();
        if out.ops.insert(name, h).is_some() {
            return Err(err(format!("{name} is listed twice")));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_table_parses_and_dates_what_the_releases_say() {
        let t = parse(TABLE).unwrap();
        assert_eq!(t.oldest, Some(TorchVersion(1, 8)));
        assert!(t.len() > 500, "{} operators", t.len());
        let sdpa = t.op("scaled_dot_product_attention").unwrap();
        assert_eq!(sdpa.since, Some(TorchVersion(2, 0)));
        assert_eq!(sdpa.arg_since("scale"), Some(TorchVersion(2, 1)));
        assert_eq!(sdpa.arg_since("enable_gqa"), Some(TorchVersion(2, 5)));
        let gelu = t.op("gelu").unwrap();
        assert_eq!(gelu.since, None, "gelu is in 1.8");
        assert_eq!(gelu.arg_since("approximate"), Some(TorchVersion(1, 12)));
        // Unchanged since 1.8: not listed.
        assert!(t.op("conv2d").is_none() && t.op("layer_norm").is_none());
        // list copy() is older than the native aten::copy of 1.12: not dated.
        assert_eq!(t.op("copy").unwrap().since, None);
        assert_eq!(t.op("pad").unwrap().since, Some(TorchVersion(1, 12)));
    }

    #[test]
    fn parse_reads_items_and_refuses_what_it_does_not_know() {
        let t =
            parse("# c\nsource 1.8 x\n[1.8]\nfoo a@1.10 #3@2.0 #2@1.9\n~bar b@1.9\n[2.0]\nbaz\n")
                .unwrap();
        let foo = t.op("foo").unwrap();
        assert_eq!(foo.since, None);
        assert_eq!(foo.arg_since("a"), Some(TorchVersion(1, 10)));
        assert_eq!(foo.arity_since(1), None);
        assert_eq!(foo.arity_since(2), Some(TorchVersion(1, 9)));
        assert_eq!(foo.arity_since(5), Some(TorchVersion(2, 0)));
        assert_eq!(t.op("bar").unwrap().since, None);
        assert_eq!(t.op("baz").unwrap().since, Some(TorchVersion(2, 0)));
        for bad in [
            "foo\n",
            "[1.8]\nfoo a\n",
            "[1.8]\nfoo #x@1.9\n",
            "[1.8]\nf-o\n",
            "[x]\n",
            "[1.8]\na\na\n",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
