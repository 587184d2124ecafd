//! From the walked pickle to a tensor inventory: names, dtypes, shapes, storages.
//!
//! Why separate from the walker: the walker only knows pickle opcodes; this module knows how
//! PyTorch spells tensors in pickles (`_rebuild_tensor_v2(storage, offset, size, stride, ...)`
//! with the storage a persistent id `('storage', torch.FloatStorage, key, location, numel)`),
//! and how state dicts, checkpoints and whole modules are laid out.

use std::collections::{BTreeMap, HashSet};

use super::pickle::{CallKind, Node, NodeId, Pickle};

/// A storage as the pickle declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageRef {
    pub key: String,
    /// Element dtype of a typed storage (`float32`), `uint8` for an untyped one.
    pub dtype: String,
    /// Declared size: elements for typed storages, bytes for `UntypedStorage`.
    pub numel: u64,
    /// Bytes the `data/<key>` record must hold.
    pub bytes: u64,
}

/// A tensor found in the pickle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundTensor {
    pub name: String,
    pub dtype: String,
    pub shape: Vec<u64>,
    pub strides: Vec<u64>,
    pub storage_key: Option<String>,
    pub storage_offset: u64,
    pub numel: u64,
    pub bytes: u64,
}

/// How the pickle's root is laid out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// A mapping of names to tensors (also a bare tensor or a list of tensors).
    StateDict,
    /// A dict whose entry `key` is the state dict.
    Checkpoint { key: String },
    /// An object graph with `nn.Module` state (`_parameters`, `_modules`).
    Module,
    /// Nothing tensor-like at all.
    NoTensors,
}

/// Element size of a dtype name.
pub fn dtype_size(d: &str) -> Option<u64> {
    Some(match d {
        "float64" | "int64" | "complex64" | "uint64" => 8,
        "float32" | "int32" | "qint32" | "uint32" | "complex32" => 4,
        "float16" | "bfloat16" | "int16" | "uint16" => 2,
        "complex128" => 16,
        "uint8" | "int8" | "bool" | "qint8" | "quint8" | "quint4x2" | "quint2x4"
        | "float8_e4m3fn" | "float8_e5m2" | "float8_e4m3fnuz" | "float8_e5m2fnuz"
        | "float8_e8m0fnu" | "bits1x8" | "bits2x4" | "bits4x2" | "bits8" => 1,
        "bits16" => 2,
        _ => return None,
    })
}

/// Canonical dtype name of a `torch.<name>` dtype global (aliases resolved).
pub fn canonical_dtype(name: &str) -> &str {
    match name {
        "float" => "float32",
        "double" => "float64",
        "half" => "float16",
        "int" => "int32",
        "long" => "int64",
        "short" => "int16",
        "cfloat" => "complex64",
        "cdouble" => "complex128",
        "chalf" => "complex32",
        other => other,
    }
}

/// dtype of a typed storage class (`FloatStorage` → `float32`); `None` for `UntypedStorage`.
pub fn storage_dtype(class: &str) -> Option<&'static str> {
    Some(match class {
        "FloatStorage" => "float32",
        "DoubleStorage" => "float64",
        "HalfStorage" => "float16",
        "BFloat16Storage" => "bfloat16",
        "LongStorage" => "int64",
        "IntStorage" => "int32",
        "ShortStorage" => "int16",
        "CharStorage" => "int8",
        "ByteStorage" => "uint8",
        "BoolStorage" => "bool",
        "ComplexFloatStorage" => "complex64",
        "ComplexDoubleStorage" => "complex128",
        "QInt8Storage" => "qint8",
        "QUInt8Storage" => "quint8",
        "QInt32Storage" => "qint32",
        "QUInt4x2Storage" => "quint4x2",
        "QUInt2x4Storage" => "quint2x4",
        _ => return None,
    })
}

/// Keys under which training checkpoints keep the model's state dict.
const CHECKPOINT_KEYS: &[&str] = &[
    "state_dict",
    "model_state_dict",
    "model",
    "model_state",
    "net",
    "network",
    "module",
    "weights",
    "ema",
    "model_ema",
    "params",
];

/// Deepest object nesting followed when naming tensors.
const MAX_DEPTH: usize = 64;

/// Reads a walked pickle.
pub struct Reader<'p> {
    p: &'p Pickle,
}

impl<'p> Reader<'p> {
    pub fn new(p: &'p Pickle) -> Self {
        Reader { p }
    }

    /// Every storage the pickle declares, by key (a linear scan of all values: no recursion,
    /// and storages the state-dict walk never reaches are found too).
    pub fn storages(&self) -> BTreeMap<String, StorageRef> {
        let mut out = BTreeMap::new();
        for n in &self.p.nodes {
            if let Node::PersId(t) = n {
                if let Some(s) = self.storage(*t) {
                    out.insert(s.key.clone(), s);
                }
            }
        }
        out
    }

    fn key_string(&self, id: NodeId) -> Option<String> {
        match self.p.node(id) {
            Node::Str(s) => Some(s.to_string()),
            Node::Int(i) => Some(i.to_string()),
            _ => None,
        }
    }

    fn storage(&self, tuple: NodeId) -> Option<StorageRef> {
        let t = self.p.seq(tuple)?;
        if t.len() < 5 || self.p.str(t[0]) != Some("storage") {
            return None;
        }
        let (_, class) = self.p.global(t[1])?;
        let key = self.key_string(t[2])?;
        let numel = u64::try_from(self.p.int(t[4])?).ok()?;
        let (dtype, bytes) = match storage_dtype(class) {
            Some(d) => (
                d.to_string(),
                numel.saturating_mul(dtype_size(d).unwrap_or(1)),
            ),
            None => ("uint8".to_string(), numel),
        };
        Some(StorageRef {
            key,
            dtype,
            numel,
            bytes,
        })
    }

    fn ints(&self, id: NodeId) -> Option<Vec<u64>> {
        let s = self.p.seq(id)?;
        s.iter()
            .map(|&i| self.p.int(i).and_then(|v| u64::try_from(v).ok()))
            .collect()
    }

    fn func_name(&self, id: NodeId) -> Option<(&str, &str)> {
        self.p.global(id)
    }

    /// The tensor a value rebuilds, if it is one.
    pub fn tensor(&self, id: NodeId) -> Option<FoundTensor> {
        self.tensor_depth(id, 0)
    }

    fn tensor_depth(&self, id: NodeId, depth: usize) -> Option<FoundTensor> {
        if depth > 8 {
            return None;
        }
        let Node::Obj(o) = self.p.node(id) else {
            return None;
        };
        if o.kind != CallKind::Reduce {
            return None;
        }
        self.tensor_call(o.func, o.args, depth)
    }

    fn tensor_call(&self, func: NodeId, args: NodeId, depth: usize) -> Option<FoundTensor> {
        let (m, f) = self.func_name(func)?;
        let a = self.p.seq(args)?;
        match (m, f) {
            ("torch._utils", "_rebuild_parameter" | "_rebuild_parameter_with_state") => {
                self.tensor_depth(*a.first()?, depth + 1)
            }
            ("torch._tensor", "_rebuild_from_type_v2") => {
                let inner_func = *a.first()?;
                let inner_args = *a.get(2)?;
                self.tensor_call(inner_func, inner_args, depth + 1)
            }
            (
                "torch._utils",
                "_rebuild_tensor" | "_rebuild_tensor_v2" | "_rebuild_tensor_v3"
                | "_rebuild_qtensor",
            ) => {
                let storage = match self.p.node(*a.first()?) {
                    Node::PersId(t) => self.storage(*t),
                    _ => None,
                };
                let storage_offset = a
                    .get(1)
                    .and_then(|&i| self.p.int(i))
                    .and_then(|v| u64::try_from(v).ok())
                    .unwrap_or(0);
                let shape = self.ints(*a.get(2)?)?;
                let strides = a.get(3).and_then(|&i| self.ints(i)).unwrap_or_default();
                let dtype = if f == "_rebuild_tensor_v3" {
                    a.get(6)
                        .and_then(|&i| self.p.global(i))
                        .map(|(_, n)| canonical_dtype(n).to_string())
                } else {
                    storage.as_ref().map(|s| s.dtype.clone())
                }
                .unwrap_or_else(|| "unknown".to_string());
                let numel = shape
                    .iter()
                    .try_fold(1u64, |acc, &d| acc.checked_mul(d))
                    .unwrap_or(u64::MAX);
                let bytes = numel.saturating_mul(dtype_size(&dtype).unwrap_or(1));
                Some(FoundTensor {
                    name: String::new(),
                    dtype,
                    shape,
                    strides,
                    storage_key: storage.map(|s| s.key),
                    storage_offset,
                    numel,
                    bytes,
                })
            }
            _ => None,
        }
    }

    /// Items of a dict or an `OrderedDict()` filled by SETITEMS.
    pub fn mapping(&self, id: NodeId) -> Option<&'p [(NodeId, NodeId)]> {
        match self.p.node(id) {
            Node::Dict(items) => Some(items),
            Node::Obj(o)
                if o.kind == CallKind::Reduce
                    && self.p.global(o.func) == Some(("collections", "OrderedDict")) =>
            {
                Some(&o.dict_items)
            }
            _ => None,
        }
    }

    /// How the root is laid out.
    pub fn layout(&self, root: NodeId) -> Layout {
        if self.has_module_state() {
            return Layout::Module;
        }
        if let Some(items) = self.mapping(root) {
            let all_tensors = items.iter().all(|&(_, v)| self.tensor(v).is_some());
            if all_tensors && !items.is_empty() {
                return Layout::StateDict;
            }
            let mut best: Option<(usize, String)> = None;
            for &(k, v) in items {
                let Some(key) = self.key_string(k) else {
                    continue;
                };
                let Some(inner) = self.mapping(v) else {
                    continue;
                };
                let n = inner
                    .iter()
                    .filter(|&&(_, t)| self.tensor(t).is_some())
                    .count();
                if n == 0 || n != inner.len() {
                    continue;
                }
                let known = CHECKPOINT_KEYS.contains(&key.as_str());
                let better = match &best {
                    None => true,
                    Some((bn, bk)) => {
                        let bknown = CHECKPOINT_KEYS.contains(&bk.as_str());
                        (known && !bknown) || (known == bknown && n > *bn)
                    }
                };
                if better {
                    best = Some((n, key));
                }
            }
            if let Some((_, key)) = best {
                return Layout::Checkpoint { key };
            }
        }
        if self.collect(root).is_empty() {
            Layout::NoTensors
        } else {
            Layout::StateDict
        }
    }

    /// Whether any object carries `nn.Module` state.
    pub fn has_module_state(&self) -> bool {
        !self.module_classes().is_empty()
    }

    /// The classes whose instances carry `nn.Module` state (`__main__.Net`, `torch.nn...Linear`).
    pub fn module_classes(&self) -> Vec<String> {
        let mut out = Vec::new();
        for n in &self.p.nodes {
            if let Node::Obj(o) = n {
                let is_module = o.state.is_some_and(|s| match self.p.node(s) {
                    Node::Dict(items) => items
                        .iter()
                        .any(|&(k, _)| matches!(self.p.str(k), Some("_modules" | "_parameters"))),
                    _ => false,
                });
                if is_module {
                    if let Some((m, c)) = self.p.global(o.func) {
                        let s = format!("{m}.{c}");
                        if !out.contains(&s) {
                            out.push(s);
                        }
                    }
                }
            }
        }
        out
    }

    /// Tensors of the state dict at `id` (a mapping), named by their keys.
    pub fn state_dict(&self, id: NodeId) -> Vec<FoundTensor> {
        let mut out = Vec::new();
        if let Some(items) = self.mapping(id) {
            for &(k, v) in items {
                if let Some(mut t) = self.tensor(v) {
                    t.name = self.key_string(k).unwrap_or_default();
                    out.push(t);
                }
            }
        }
        out
    }

    /// Every tensor reachable from `root`, named by its path (module containers skipped, so a
    /// whole pickled module yields state-dict names such as `layer1.0.conv1.weight`).
    pub fn collect(&self, root: NodeId) -> Vec<FoundTensor> {
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        self.collect_into(root, String::new(), 0, &mut seen, &mut out);
        out
    }

    fn collect_into(
        &self,
        id: NodeId,
        path: String,
        depth: usize,
        seen: &mut HashSet<NodeId>,
        out: &mut Vec<FoundTensor>,
    ) {
        if depth > MAX_DEPTH {
            return;
        }
        if let Some(mut t) = self.tensor(id) {
            t.name = path;
            out.push(t);
            return;
        }
        if !seen.insert(id) {
            return;
        }
        let join = |k: &str| -> String {
            if matches!(k, "_parameters" | "_buffers" | "_modules") {
                path.clone()
            } else if path.is_empty() {
                k.to_string()
            } else {
                format!("{path}.{k}")
            }
        };
        if let Some(items) = self.mapping(id) {
            for &(k, v) in items {
                let key = self.key_string(k).unwrap_or_else(|| "?".into());
                self.collect_into(v, join(&key), depth + 1, seen, out);
            }
            return;
        }
        match self.p.node(id) {
            Node::Tuple(v) | Node::List(v) => {
                for (i, &c) in v.iter().enumerate() {
                    self.collect_into(c, join(&i.to_string()), depth + 1, seen, out);
                }
            }
            Node::Obj(o) => {
                if let Some(s) = o.state {
                    // (state, slotstate) tuples from __reduce_ex__ put the dict first.
                    let s = match self.p.node(s) {
                        Node::Tuple(t) if t.len() == 2 => t[0],
                        _ => s,
                    };
                    self.collect_into(s, path.clone(), depth + 1, seen, out);
                }
                for &(k, v) in &o.dict_items {
                    let key = self.key_string(k).unwrap_or_else(|| "?".into());
                    self.collect_into(v, join(&key), depth + 1, seen, out);
                }
            }
            _ => {}
        }
    }

    /// Value at `key` of the mapping at `id`.
    pub fn get(&self, id: NodeId, key: &str) -> Option<NodeId> {
        self.mapping(id)?
            .iter()
            .find(|&&(k, _)| self.key_string(k).as_deref() == Some(key))
            .map(|&(_, v)| v)
    }

    /// A list of strings (the legacy format's storage-key list).
    pub fn strings(&self, id: NodeId) -> Option<Vec<String>> {
        self.p
            .seq(id)?
            .iter()
            .map(|&i| self.key_string(i))
            .collect()
    }
}
