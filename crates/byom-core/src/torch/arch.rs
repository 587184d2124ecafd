//! Which zoo builder made a state dict: torchvision's and timm's architectures, recognised by a
//! fingerprint table generated from the libraries themselves.
//!
//! Why a table: a state dict is only weights; the server compiles it by rebuilding the graph
//! with the library's own constructor (`torchvision.models.get_model` / `timm.create_model`),
//! so the browser and the CLI (no Python) must name that constructor, its `num_classes` and its
//! `in_chans` from the tensor names and shapes alone. `tools/zoo/gen_fingerprints.py`
//! instantiates every builder on PyTorch's meta device and writes `zoo_fingerprints.txt`
//! (shipped inside the core; docs/architectures.md has the counts and versions).
//!
//! How a lookup stays cheap: a fingerprint is the wrapping sum of one FNV-1a hash per tensor
//! (`name \0 d0,d1,…`), so it is order-free and a size that follows `num_classes` or `in_chans`
//! (a *wildcard*, written `*`) is swapped in by subtracting one hash and adding another. Each
//! tensor is hashed once; each wildcard group of the table (the head and stem layouts, a few
//! hundred) costs a few map lookups and one hash-map probe, never a comparison of every entry.
//! `num_batches_tracked` counters are left out (a detector fine-tuned from pretrained weights has
//! FrozenBatchNorm2d, which has none).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use super::TensorInfo;

/// The model library whose own constructor rebuilds a recognised state dict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Zoo {
    Torchvision,
    Timm,
}

impl Zoo {
    pub fn as_str(self) -> &'static str {
        match self {
            Zoo::Torchvision => "torchvision",
            Zoo::Timm => "timm",
        }
    }
}

/// A recognised state dict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchMatch {
    /// The library whose constructor builds it.
    pub zoo: Zoo,
    /// The library's builder name (`resnet50`, `convnext_tiny`): `torchvision.models.get_model(name)`
    /// / `timm.create_model(name)`.
    pub name: String,
    /// Output features of the final classifier (the `num_classes` constructor argument).
    pub num_classes: u64,
    /// Input channels of the first convolution (timm's `in_chans`; torchvision: always 3).
    pub in_channels: u64,
    /// From the table: whether the server compiles it.
    pub server_compilable: bool,
    /// Further constructor keyword arguments the state dict proves (`{"aux_loss": true}`), passed
    /// as they are; empty for most models.
    #[serde(default)]
    pub builder_kwargs: std::collections::BTreeMap<String, serde_json::Value>,
}

impl ArchMatch {
    /// `torchvision/resnet50`, `timm/convnext_tiny`: how the product names it everywhere.
    pub fn qualified(&self) -> String {
        format!("{}/{}", self.zoo.as_str(), self.name)
    }
}

/// What the table says about a state dict's tensors.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Recognition {
    /// The builder that makes exactly these names and shapes.
    pub arch: Option<ArchMatch>,
    /// A prefix every key carries and that was stripped before matching (`module.` from
    /// `DataParallel`, `_orig_mod.` from `torch.compile`); the builder's own keys lack it.
    pub prefix: Option<String>,
    /// Other builders with exactly the same names and shapes (timm's `tf_` twins differ only in
    /// padding): the state dict cannot tell them apart, the first in table order is `arch`.
    pub alternatives: Vec<String>,
    /// No exact match: the closest family, in words ("timm/convnext_* (same layer names as
    /// convnext_tiny)").
    pub nearest: Option<String>,
}

/// Prefixes a wrapper adds to every key, stripped before matching.
const WRAPPER_PREFIXES: &[&str] = &["module.", "_orig_mod."];

/// The generated table (tools/zoo/gen_fingerprints.py).
const TABLE_TEXT: &str = include_str!("zoo_fingerprints.txt");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Var {
    Classes,
    Channels,
}

/// A size that follows a constructor argument: `shape[dim] = a * value + b`.
#[derive(Debug)]
struct Wild {
    key: String,
    dim: usize,
    var: Var,
    a: u64,
    b: u64,
}

#[derive(Debug)]
struct Entry {
    zoo: Zoo,
    name: String,
    family: usize,
    group: usize,
    fingerprint: u64,
    keyset: u64,
    compilable: bool,
    kwargs: BTreeMap<String, serde_json::Value>,
}

/// The parsed table.
#[derive(Debug)]
pub struct Table {
    /// `torch=2.11.0 torchvision=0.26.0 timm=1.0.31`: the libraries it was generated from.
    pub versions: String,
    groups: Vec<Vec<Wild>>,
    families: Vec<String>,
    entries: Vec<Entry>,
    by_fingerprint: HashMap<u64, Vec<usize>>,
    by_keyset: HashMap<u64, Vec<usize>>,
}

impl Table {
    /// Builders listed per library.
    pub fn count(&self, zoo: Zoo) -> usize {
        self.entries
            .iter()
            .filter(|e| e.zoo == zoo)
            .map(|e| e.name.as_str())
            .collect::<BTreeSet<_>>()
            .len()
    }

    /// `torchvision/resnet50` for every builder listed, in table order (kwargs variants once).
    pub fn names(&self) -> Vec<String> {
        let mut seen = BTreeSet::new();
        self.entries
            .iter()
            .map(|e| format!("{}/{}", e.zoo.as_str(), e.name))
            .filter(|n| seen.insert(n.clone()))
            .collect()
    }
}

/// The builder `qualified` (`torchvision/fasterrcnn_mobilenet_v3_large_fpn`) as the match of a
/// state dict `like` matched: its classifier width and input channels. For choosing among
/// [`Recognition::alternatives`], whose tensors are the same.
pub fn twin(qualified: &str, like: &ArchMatch) -> Option<ArchMatch> {
    table()
        .entries
        .iter()
        .find(|e| format!("{}/{}", e.zoo.as_str(), e.name) == qualified)
        .map(|e| ArchMatch {
            zoo: e.zoo,
            name: e.name.clone(),
            num_classes: like.num_classes,
            in_channels: like.in_channels,
            server_compilable: e.compilable,
            builder_kwargs: e.kwargs.clone(),
        })
}

/// The table shipped with the core, parsed on first use.
pub fn table() -> &'static Table {
    static TABLE: OnceLock<Table> = OnceLock::new();
    TABLE.get_or_init(|| parse(TABLE_TEXT).expect("zoo_fingerprints.txt is generated and tested"))
}

fn parse(text: &str) -> Result<Table, String> {
    let mut t = Table {
        versions: String::new(),
        groups: Vec::new(),
        families: Vec::new(),
        entries: Vec::new(),
        by_fingerprint: HashMap::new(),
        by_keyset: HashMap::new(),
    };
    let num = |s: &str| s.parse::<u64>().map_err(|e| format!("{s:?}: {e}"));
    for line in text.lines() {
        let bad = |why: &str| format!("{why}: {line}");
        let mut p = line.splitn(3, ' ');
        match p.next() {
            Some("V") => {
                let rest = p.nth(1).unwrap_or_default();
                t.versions = rest.to_string();
            }
            Some("G") => {
                let _id = p.next();
                let specs = p.next().unwrap_or_default();
                let mut g = Vec::new();
                for s in specs.split(';').filter(|s| !s.is_empty()) {
                    let f: Vec<&str> = s.split('|').collect();
                    let [key, dim, var, a, b] = f.as_slice() else {
                        return Err(bad("wildcard"));
                    };
                    g.push(Wild {
                        key: key.to_string(),
                        dim: num(dim)? as usize,
                        var: match *var {
                            "classes" => Var::Classes,
                            "channels" => Var::Channels,
                            _ => return Err(bad("wildcard variable")),
                        },
                        a: num(a)?,
                        b: num(b)?,
                    });
                }
                t.groups.push(g);
            }
            Some("F") => {
                let _id = p.next();
                t.families.push(p.next().unwrap_or_default().to_string());
            }
            Some("E") => {
                let f: Vec<&str> = line.splitn(9, ' ').collect();
                if f.len() < 8 {
                    return Err(bad("entry"));
                }
                let hex = |s: &str| u64::from_str_radix(s, 16).map_err(|e| format!("{s:?}: {e}"));
                let kwargs = match f.get(8) {
                    Some(j) => serde_json::from_str(j).map_err(|e| bad(&e.to_string()))?,
                    None => BTreeMap::new(),
                };
                let e = Entry {
                    zoo: if f[1] == "v" {
                        Zoo::Torchvision
                    } else {
                        Zoo::Timm
                    },
                    name: f[2].to_string(),
                    family: num(f[3])? as usize,
                    group: num(f[4])? as usize,
                    fingerprint: hex(f[5])?,
                    keyset: hex(f[6])?,
                    compilable: f[7] == "c",
                    kwargs,
                };
                if e.group >= t.groups.len() || e.family >= t.families.len() {
                    return Err(bad("entry names an unknown group or family"));
                }
                let i = t.entries.len();
                t.by_fingerprint.entry(e.fingerprint).or_default().push(i);
                t.by_keyset.entry(e.keyset).or_default().push(i);
                t.entries.push(e);
            }
            _ => {}
        }
    }
    Ok(t)
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0100_0000_01b3;

fn fnv(h: u64, bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(h, |h, &b| (h ^ u64::from(b)).wrapping_mul(FNV_PRIME))
}

/// One tensor's hash; `None` dims are wildcards (`*`). Same text as the generator hashes.
fn tensor_hash(key: &str, dims: impl Iterator<Item = Option<u64>>) -> u64 {
    let mut h = fnv(fnv(FNV_OFFSET, key.as_bytes()), b"\0");
    for (i, d) in dims.enumerate() {
        if i > 0 {
            h = fnv(h, b",");
        }
        h = match d {
            Some(d) => fnv(h, d.to_string().as_bytes()),
            None => fnv(h, b"*"),
        };
    }
    h
}

/// Recognise a state dict's tensors (see [`Recognition`]).
pub fn recognise(tensors: &[TensorInfo]) -> Recognition {
    recognise_in(table(), tensors)
}

fn recognise_in(t: &Table, tensors: &[TensorInfo]) -> Recognition {
    let keys = tensors
        .iter()
        .map(|x| x.name.as_str())
        .filter(|k| !k.ends_with("num_batches_tracked"));
    let prefix = WRAPPER_PREFIXES
        .iter()
        .find(|p| {
            let mut ks = keys.clone().peekable();
            ks.peek().is_some() && ks.all(|k| k.starts_with(**p))
        })
        .copied();
    let shapes: HashMap<&str, &[u64]> = tensors
        .iter()
        .filter(|x| !x.name.ends_with("num_batches_tracked"))
        .map(|x| {
            let k = prefix.map_or(x.name.as_str(), |p| &x.name[p.len()..]);
            (k, x.shape.as_slice())
        })
        .collect();
    let mut rec = Recognition {
        prefix: prefix.map(str::to_string),
        ..Recognition::default()
    };
    if shapes.is_empty() {
        return rec;
    }
    let (mut total, mut keyset) = (0u64, 0u64);
    for (k, s) in &shapes {
        total = total.wrapping_add(tensor_hash(k, s.iter().map(|&d| Some(d))));
        keyset = keyset.wrapping_add(fnv(FNV_OFFSET, k.as_bytes()));
    }
    let mut found: Vec<(usize, u64, u64)> = Vec::new();
    for (gi, group) in t.groups.iter().enumerate() {
        let Some(fp) = group_fingerprint(group, &shapes, total) else {
            continue;
        };
        for &ei in t.by_fingerprint.get(&fp).into_iter().flatten() {
            if t.entries[ei].group != gi {
                continue;
            }
            if let Some((classes, channels)) = values(group, &shapes) {
                found.push((ei, classes, channels));
            }
        }
    }
    found.sort_unstable();
    if let Some(&(ei, num_classes, in_channels)) = found.first() {
        let e = &t.entries[ei];
        rec.arch = Some(ArchMatch {
            zoo: e.zoo,
            name: e.name.clone(),
            num_classes,
            in_channels,
            server_compilable: e.compilable,
            builder_kwargs: e.kwargs.clone(),
        });
        let first = format!("{}/{}", e.zoo.as_str(), e.name);
        let mut alts: Vec<String> = found[1..]
            .iter()
            .map(|&(i, _, _)| format!("{}/{}", t.entries[i].zoo.as_str(), t.entries[i].name))
            .filter(|n| *n != first)
            .collect();
        alts.dedup();
        rec.alternatives = alts;
        return rec;
    }
    rec.nearest = nearest(t, &shapes, keyset);
    rec
}

/// The fingerprint of `shapes` with `group`'s wildcards, or `None` when a wildcard's tensor is
/// missing.
fn group_fingerprint(group: &[Wild], shapes: &HashMap<&str, &[u64]>, total: u64) -> Option<u64> {
    let mut fp = total;
    let mut i = 0;
    while i < group.len() {
        // A group's wildcards are sorted by key: one tensor's wildcards are adjacent.
        let key = group[i].key.as_str();
        let mut j = i;
        while j < group.len() && group[j].key == key {
            j += 1;
        }
        let s = shapes.get(key)?;
        if group[i..j].iter().any(|w| w.dim >= s.len()) {
            return None;
        }
        let wild = |d: usize| group[i..j].iter().any(|w| w.dim == d);
        fp = fp
            .wrapping_sub(tensor_hash(key, s.iter().map(|&d| Some(d))))
            .wrapping_add(tensor_hash(
                key,
                s.iter().enumerate().map(|(d, &x)| (!wild(d)).then_some(x)),
            ));
        i = j;
    }
    Some(fp)
}

/// num_classes and in_channels read back from the wildcards' sizes; `None` when they disagree
/// or do not divide (then the shapes are not the builder's for any argument).
fn values(group: &[Wild], shapes: &HashMap<&str, &[u64]>) -> Option<(u64, u64)> {
    let (mut classes, mut channels) = (None, None);
    for w in group {
        let size = *shapes.get(w.key.as_str())?.get(w.dim)?;
        let v = size.checked_sub(w.b)?;
        if w.a == 0 || v % w.a != 0 || v / w.a == 0 {
            return None;
        }
        let slot = match w.var {
            Var::Classes => &mut classes,
            Var::Channels => &mut channels,
        };
        if slot.is_some_and(|x| x != v / w.a) {
            return None;
        }
        *slot = Some(v / w.a);
    }
    Some((classes?, channels.unwrap_or(3)))
}

/// The closest family when nothing matches exactly: builders with the very same layer names
/// (other widths), else the families whose head and stem layouts the state dict has.
fn nearest(t: &Table, shapes: &HashMap<&str, &[u64]>, keyset: u64) -> Option<String> {
    let same_names: Vec<&Entry> = t
        .by_keyset
        .get(&keyset)
        .into_iter()
        .flatten()
        .map(|&i| &t.entries[i])
        .collect();
    if let Some(first) = same_names.first() {
        let families: BTreeSet<&str> = same_names
            .iter()
            .map(|e| t.families[e.family].as_str())
            .collect();
        let mut names: Vec<&str> = same_names.iter().map(|e| e.name.as_str()).collect();
        names.dedup();
        let shown = names.iter().take(3).copied().collect::<Vec<_>>().join(", ");
        let more = names.len().saturating_sub(3);
        let more = if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        };
        return Some(format!(
            "{} (the same layer names as {}/{shown}{more}), but the shapes differ from every one of them",
            families.into_iter().map(|f| format!("{f}_*")).collect::<Vec<_>>().join(" or "),
            first.zoo.as_str()
        ));
    }
    // Families whose whole wildcard layout (classifier and stem keys) the state dict has.
    let mut families: BTreeSet<&str> = BTreeSet::new();
    for (gi, group) in t.groups.iter().enumerate() {
        if group.len() >= 2 && group.iter().all(|w| shapes.contains_key(w.key.as_str())) {
            families.extend(
                t.entries
                    .iter()
                    .filter(|e| e.group == gi)
                    .map(|e| t.families[e.family].as_str()),
            );
        }
    }
    if families.is_empty() || families.len() > 3 {
        return None;
    }
    Some(format!(
        "{} (its classifier and stem are laid out like theirs), but its layers differ from every one of them",
        families
            .into_iter()
            .map(|f| format!("{f}_*"))
            .collect::<Vec<_>>()
            .join(" or ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(name: &str, shape: &[u64]) -> TensorInfo {
        TensorInfo {
            name: name.into(),
            dtype: "float32".into(),
            shape: shape.to_vec(),
            ..TensorInfo::default()
        }
    }

    /// A two-entry table, hashed by the same functions the generator mirrors.
    fn tiny_table() -> Table {
        let net = |in_ch: Option<u64>| {
            let fc = tensor_hash("fc.weight", [None, Some(8)].into_iter());
            let conv = tensor_hash(
                "conv.weight",
                [Some(8), in_ch, Some(3), Some(3)].into_iter(),
            );
            let bias = tensor_hash("fc.bias", [None].into_iter());
            fc.wrapping_add(conv).wrapping_add(bias)
        };
        let ks = ["conv.weight", "fc.bias", "fc.weight"]
            .iter()
            .fold(0u64, |s, k| s.wrapping_add(fnv(FNV_OFFSET, k.as_bytes())));
        let text = format!(
            "V 1 torch=x\nG 0 fc.bias|0|classes|1|0;fc.weight|0|classes|1|0\n\
             G 1 conv.weight|1|channels|1|0;fc.bias|0|classes|1|0;fc.weight|0|classes|1|0\n\
             F 0 torchvision/net\nF 1 timm/net\n\
             E v net 0 0 {:016x} {ks:016x} c\nE t net 1 1 {:016x} {ks:016x} c\n",
            net(Some(3)),
            net(None)
        );
        parse(&text).expect("table")
    }

    fn net(prefix: &str, in_ch: u64, classes: u64) -> Vec<TensorInfo> {
        vec![
            t(&format!("{prefix}conv.weight"), &[8, in_ch, 3, 3]),
            t(&format!("{prefix}conv.num_batches_tracked"), &[]),
            t(&format!("{prefix}fc.weight"), &[classes, 8]),
            t(&format!("{prefix}fc.bias"), &[classes]),
        ]
    }

    #[test]
    fn wildcards_give_classes_and_channels_and_torchvision_wins_a_tie() {
        let tb = tiny_table();
        let r = recognise_in(&tb, &net("", 3, 7));
        let a = r.arch.expect("net");
        assert_eq!(
            (a.qualified().as_str(), a.num_classes, a.in_channels),
            ("torchvision/net", 7, 3)
        );
        assert_eq!(r.alternatives, vec!["timm/net".to_string()]);
        // One channel: only timm's builder takes in_chans.
        let a = recognise_in(&tb, &net("", 1, 4)).arch.expect("gray");
        assert_eq!(
            (a.qualified().as_str(), a.num_classes, a.in_channels),
            ("timm/net", 4, 1)
        );
    }

    #[test]
    fn a_wrapper_prefix_is_stripped_and_reported() {
        let r = recognise_in(&tiny_table(), &net("module.", 3, 2));
        assert_eq!(r.prefix.as_deref(), Some("module."));
        assert_eq!(r.arch.map(|a| a.name), Some("net".to_string()));
    }

    #[test]
    fn other_shapes_name_the_nearest_family() {
        let mut ts = net("", 3, 2);
        ts[0].shape = vec![16, 3, 3, 3];
        let r = recognise_in(&tiny_table(), &ts);
        assert_eq!(r.arch, None);
        let n = r.nearest.expect("nearest");
        assert!(n.contains("net_*") && n.contains("shapes differ"), "{n}");
        // Disagreeing head sizes are no match either.
        let mut ts = net("", 3, 2);
        ts[3].shape = vec![3];
        assert_eq!(recognise_in(&tiny_table(), &ts).arch, None);
    }

    #[test]
    fn the_shipped_table_parses_and_knows_both_libraries() {
        let tb = table();
        assert!(tb.versions.contains("torchvision=") && tb.versions.contains("timm="));
        assert!(
            tb.count(Zoo::Torchvision) > 80,
            "{}",
            tb.count(Zoo::Torchvision)
        );
        assert!(tb.count(Zoo::Timm) > 500, "{}", tb.count(Zoo::Timm));
    }
}
