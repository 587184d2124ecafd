//! A pickle reader that never executes anything.
//!
//! Why our own: loading a pickle runs whatever its `GLOBAL`/`REDUCE` opcodes name, and the Rust
//! crates that read pickles either miss opcodes `.pt` files use (`BINPERSID`) or do not build for
//! wasm32. This walker interprets every opcode of protocols 0–5 as *data*: globals become
//! [`Node::Global`] values, calls become [`Node::Obj`] records, nothing is ever looked up or run.
//!
//! The memo behaves exactly as CPython's (`PUT n` stores at key n, `MEMOIZE` stores at
//! `len(memo)`, `GET` of a missing key is an error), and containers are shared by identity, so
//! items added after a `PUT` are visible through a later `GET` — the same object graph CPython
//! would build. Every global referenced is recorded in order *as soon as its opcode is read*,
//! so a payload placed before a deliberate parse error is still reported.
//!
//! Bounds: opcodes (`max_ops`), nodes (`max_nodes`), and the input is a byte slice already capped
//! by `Limits::max_pickle_bytes`. Values live in an arena of nodes addressed by index, so cycles
//! and memo sharing cost nothing and can never recurse.

use std::collections::HashMap;

/// Index of a node in [`Pickle::nodes`].
pub type NodeId = u32;

/// What a call-like opcode was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallKind {
    /// `REDUCE`: `func(*args)`.
    Reduce,
    /// `NEWOBJ` / `NEWOBJ_EX`: `cls.__new__(cls, *args)`.
    NewObj,
    /// `INST` / `OBJ`: protocol-0 class instantiation.
    Inst,
}

/// A call recorded as data, with whatever later opcodes did to its result.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjNode {
    pub kind: CallKind,
    pub func: NodeId,
    pub args: NodeId,
    /// `BUILD` state applied to the result (last one wins, as `__setstate__` would).
    pub state: Option<NodeId>,
    /// `SETITEM(S)` applied to the result (e.g. an `OrderedDict()` filled afterwards).
    pub dict_items: Vec<(NodeId, NodeId)>,
    /// `APPEND(S)` applied to the result.
    pub list_items: Vec<NodeId>,
}

/// One value of the object graph the pickle describes.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    None,
    Bool(bool),
    Int(i64),
    /// An integer that does not fit in i64 (LONG1/LONG4/LONG); only its byte length is kept.
    BigInt(usize),
    Float(f64),
    Str(Box<str>),
    /// Bytes payload; only the length is kept (tensor bytes never live in pickles we need).
    Bytes(u64),
    Tuple(Vec<NodeId>),
    List(Vec<NodeId>),
    Dict(Vec<(NodeId, NodeId)>),
    Set(Vec<NodeId>),
    /// A reference to `module.name`; never resolved.
    Global(Box<(String, String)>),
    /// A persistent id (`PERSID`/`BINPERSID`): how `.pt` pickles point at storages.
    PersId(NodeId),
    Obj(Box<ObjNode>),
    /// An extension-registry code (`EXT1/2/4`), which a real unpickler resolves to a global.
    Ext(u32),
    /// A protocol-5 out-of-band buffer.
    Buffer,
}

/// Why a walk stopped before `STOP`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PickleError {
    /// The bytes ended before `STOP` (the caller may feed more and retry).
    Truncated,
    /// The opcode budget ran out.
    TooManyOps,
    /// The node budget ran out.
    TooManyNodes,
    /// Malformed input at byte `pos`.
    Invalid { pos: usize, what: String },
}

impl std::fmt::Display for PickleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PickleError::Truncated => write!(f, "the pickle ends before its STOP opcode"),
            PickleError::TooManyOps => write!(f, "more pickle opcodes than allowed"),
            PickleError::TooManyNodes => write!(f, "more pickle values than allowed"),
            PickleError::Invalid { pos, what } => write!(f, "invalid pickle at byte {pos}: {what}"),
        }
    }
}

/// Everything a walk learned, also when it stopped early.
#[derive(Debug, Clone, Default)]
pub struct Pickle {
    pub nodes: Vec<Node>,
    /// The value left by `STOP`, when reached.
    pub root: Option<NodeId>,
    /// Every global referenced, in order of appearance, duplicates removed. Names that could not
    /// be known (a `STACK_GLOBAL` on non-strings, an extension code) appear as `?.<what>`.
    pub globals: Vec<(String, String)>,
    /// Bytes consumed up to and including `STOP`.
    pub consumed: usize,
    pub error: Option<PickleError>,
    /// Highest `PROTO` seen.
    pub protocol: u8,
}

impl Pickle {
    pub fn node(&self, id: NodeId) -> &Node {
        self.nodes.get(id as usize).unwrap_or(&Node::None)
    }

    /// The string value of a node, if it is one.
    pub fn str(&self, id: NodeId) -> Option<&str> {
        match self.node(id) {
            Node::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The integer value of a node, if it is one (bools count, as in Python).
    pub fn int(&self, id: NodeId) -> Option<i64> {
        match self.node(id) {
            Node::Int(i) => Some(*i),
            Node::Bool(b) => Some(i64::from(*b)),
            _ => None,
        }
    }

    /// Items of a tuple or list.
    pub fn seq(&self, id: NodeId) -> Option<&[NodeId]> {
        match self.node(id) {
            Node::Tuple(v) | Node::List(v) => Some(v),
            _ => None,
        }
    }

    /// `(module, name)` of a global node.
    pub fn global(&self, id: NodeId) -> Option<(&str, &str)> {
        match self.node(id) {
            Node::Global(g) => Some((g.0.as_str(), g.1.as_str())),
            _ => None,
        }
    }
}

/// Budgets of one walk.
#[derive(Debug, Clone, Copy)]
pub struct WalkLimits {
    pub max_ops: u64,
    pub max_nodes: u64,
}

/// Walk `data` as one pickle. Never panics, never recurses, never executes anything.
pub fn walk(data: &[u8], limits: WalkLimits) -> Pickle {
    let mut w = Walker {
        data,
        pos: 0,
        out: Pickle::default(),
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
        limits,
        seen: std::collections::HashSet::new(),
    };
    match w.run() {
        Ok(root) => {
            w.out.root = Some(root);
            w.out.consumed = w.pos;
        }
        Err(e) => w.out.error = Some(e),
    }
    w.out
}

struct Walker<'a> {
    data: &'a [u8],
    pos: usize,
    out: Pickle,
    stack: Vec<NodeId>,
    /// Stack lengths at each MARK (CPython's metastack, flattened).
    marks: Vec<usize>,
    memo: HashMap<u64, NodeId>,
    limits: WalkLimits,
    seen: std::collections::HashSet<(String, String)>,
}

type R<T> = Result<T, PickleError>;

impl<'a> Walker<'a> {
    fn invalid(&self, what: impl Into<String>) -> PickleError {
        PickleError::Invalid {
            pos: self.pos,
            what: what.into(),
        }
    }

    fn take(&mut self, n: usize) -> R<&'a [u8]> {
        let end = self.pos.checked_add(n).ok_or(PickleError::Truncated)?;
        let s = self.data.get(self.pos..end).ok_or(PickleError::Truncated)?;
        self.pos = end;
        Ok(s)
    }

    fn byte(&mut self) -> R<u8> {
        Ok(self.take(1)?[0])
    }

    fn u16le(&mut self) -> R<u16> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32le(&mut self) -> R<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64le(&mut self) -> R<u64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    /// A protocol-0 argument: bytes up to `\n` (the newline consumed, not returned).
    fn line(&mut self) -> R<&'a [u8]> {
        let rest = self.data.get(self.pos..).ok_or(PickleError::Truncated)?;
        let n = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or(PickleError::Truncated)?;
        let s = &rest[..n];
        self.pos += n + 1;
        Ok(s)
    }

    fn line_str(&mut self) -> R<String> {
        let l = self.line()?;
        Ok(String::from_utf8_lossy(l).into_owned())
    }

    fn len_arg(&mut self, n: u64) -> R<usize> {
        // A declared length longer than what is left is a truncated pickle, never an allocation.
        let left = (self.data.len() - self.pos.min(self.data.len())) as u64;
        if n > left {
            return Err(PickleError::Truncated);
        }
        usize::try_from(n).map_err(|_| PickleError::Truncated)
    }

    fn alloc(&mut self, n: Node) -> R<NodeId> {
        if self.out.nodes.len() as u64 >= self.limits.max_nodes {
            return Err(PickleError::TooManyNodes);
        }
        let id = NodeId::try_from(self.out.nodes.len()).map_err(|_| PickleError::TooManyNodes)?;
        self.out.nodes.push(n);
        Ok(id)
    }

    fn push(&mut self, n: Node) -> R<()> {
        let id = self.alloc(n)?;
        self.stack.push(id);
        Ok(())
    }

    /// Lowest stack index visible (items below the last MARK are hidden, as in CPython).
    fn fence(&self) -> usize {
        self.marks.last().copied().unwrap_or(0)
    }

    fn pop(&mut self) -> R<NodeId> {
        if self.stack.len() <= self.fence() {
            return Err(self.invalid("unpickling stack underflow"));
        }
        self.stack
            .pop()
            .ok_or_else(|| self.invalid("unpickling stack underflow"))
    }

    fn top(&self) -> R<NodeId> {
        if self.stack.len() <= self.fence() {
            return Err(self.invalid("unpickling stack underflow"));
        }
        self.stack
            .last()
            .copied()
            .ok_or_else(|| self.invalid("unpickling stack underflow"))
    }

    fn pop_mark(&mut self) -> R<Vec<NodeId>> {
        let m = self
            .marks
            .pop()
            .ok_or_else(|| self.invalid("no MARK on the stack"))?;
        let m = m.min(self.stack.len());
        Ok(self.stack.split_off(m))
    }

    fn record_global(&mut self, module: String, name: String) -> R<NodeId> {
        let key = (module, name);
        if !self.seen.contains(&key) {
            self.seen.insert(key.clone());
            self.out.globals.push(key.clone());
        }
        self.alloc(Node::Global(Box::new(key)))
    }

    fn memo_put(&mut self, key: u64) -> R<()> {
        let top = self.top()?;
        self.memo.insert(key, top);
        Ok(())
    }

    fn memo_get(&mut self, key: u64) -> R<()> {
        match self.memo.get(&key) {
            Some(&id) => {
                self.stack.push(id);
                Ok(())
            }
            None => Err(self.invalid(format!("memo key {key} not found"))),
        }
    }

    fn call(&mut self, kind: CallKind, func: NodeId, args: NodeId) -> R<()> {
        self.push(Node::Obj(Box::new(ObjNode {
            kind,
            func,
            args,
            state: None,
            dict_items: Vec::new(),
            list_items: Vec::new(),
        })))
    }

    fn set_items(&mut self, target: NodeId, items: Vec<(NodeId, NodeId)>) -> R<()> {
        match self.out.nodes.get_mut(target as usize) {
            Some(Node::Dict(d)) => d.extend(items),
            Some(Node::Obj(o)) => o.dict_items.extend(items),
            _ => return Err(self.invalid("SETITEM on a value that is not a dict")),
        }
        Ok(())
    }

    fn append_items(&mut self, target: NodeId, items: Vec<NodeId>) -> R<()> {
        match self.out.nodes.get_mut(target as usize) {
            Some(Node::List(l)) => l.extend(items),
            Some(Node::Set(l)) => l.extend(items),
            Some(Node::Obj(o)) => o.list_items.extend(items),
            _ => return Err(self.invalid("APPEND on a value that is not a list")),
        }
        Ok(())
    }

    fn pairs(&self, items: Vec<NodeId>) -> R<Vec<(NodeId, NodeId)>> {
        if items.len() & 1 == 1 {
            return Err(self.invalid("odd number of items for a dict"));
        }
        Ok(items.chunks(2).map(|c| (c[0], c[1])).collect())
    }

    fn run(&mut self) -> R<NodeId> {
        let mut ops: u64 = 0;
        loop {
            ops += 1;
            if ops > self.limits.max_ops {
                return Err(PickleError::TooManyOps);
            }
            let op = self.byte()?;
            match op {
                // ---- framing and protocol
                0x80 => {
                    let p = self.byte()?;
                    self.out.protocol = self.out.protocol.max(p);
                }
                0x95 => {
                    // FRAME: a length hint only; the bytes follow inline.
                    self.u64le()?;
                }
                b'.' => {
                    let v = self.pop()?;
                    return Ok(v);
                }
                // ---- stack manipulation
                b'(' => self.marks.push(self.stack.len()),
                b'0' => {
                    if self.stack.len() > self.fence() {
                        self.stack.pop();
                    } else {
                        self.pop_mark()?;
                    }
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let t = self.top()?;
                    self.stack.push(t);
                }
                // ---- memo
                b'p' => {
                    let l = self.line_str()?;
                    let k = l
                        .trim()
                        .parse::<u64>()
                        .map_err(|_| self.invalid("bad PUT key"))?;
                    self.memo_put(k)?;
                }
                b'q' => {
                    let k = u64::from(self.byte()?);
                    self.memo_put(k)?;
                }
                b'r' => {
                    let k = u64::from(self.u32le()?);
                    self.memo_put(k)?;
                }
                0x94 => {
                    let k = self.memo.len() as u64;
                    self.memo_put(k)?;
                }
                b'g' => {
                    let l = self.line_str()?;
                    let k = l
                        .trim()
                        .parse::<u64>()
                        .map_err(|_| self.invalid("bad GET key"))?;
                    self.memo_get(k)?;
                }
                b'h' => {
                    let k = u64::from(self.byte()?);
                    self.memo_get(k)?;
                }
                b'j' => {
                    let k = u64::from(self.u32le()?);
                    self.memo_get(k)?;
                }
                // ---- constants
                b'N' => self.push(Node::None)?,
                0x88 => self.push(Node::Bool(true))?,
                0x89 => self.push(Node::Bool(false))?,
                b'I' => {
                    let l = self.line_str()?;
                    let t = l.trim();
                    let n = match t {
                        "01" => Node::Bool(true),
                        "00" => Node::Bool(false),
                        _ => match t.parse::<i64>() {
                            Ok(i) => Node::Int(i),
                            Err(_)
                                if t.bytes().all(|b| b.is_ascii_digit() || b == b'-')
                                    && !t.is_empty() =>
                            {
                                Node::BigInt(t.len())
                            }
                            Err(_) => return Err(self.invalid("bad INT")),
                        },
                    };
                    self.push(n)?;
                }
                b'J' => {
                    let v = self.u32le()? as i32;
                    self.push(Node::Int(i64::from(v)))?;
                }
                b'K' => {
                    let v = self.byte()?;
                    self.push(Node::Int(i64::from(v)))?;
                }
                b'M' => {
                    let v = self.u16le()?;
                    self.push(Node::Int(i64::from(v)))?;
                }
                b'L' => {
                    let l = self.line_str()?;
                    let t = l.trim().trim_end_matches('L');
                    let n = match t.parse::<i64>() {
                        Ok(i) => Node::Int(i),
                        Err(_) => Node::BigInt(t.len()),
                    };
                    self.push(n)?;
                }
                0x8a => {
                    let n = usize::from(self.byte()?);
                    let b = self.take(n)?;
                    let node = long_le(b);
                    self.push(node)?;
                }
                0x8b => {
                    let n = self.u32le()? as i32;
                    if n < 0 {
                        return Err(self.invalid("negative LONG4 length"));
                    }
                    let n = self.len_arg(n as u64)?;
                    let b = self.take(n)?;
                    let node = long_le(b);
                    self.push(node)?;
                }
                b'F' => {
                    let l = self.line_str()?;
                    let f = l
                        .trim()
                        .parse::<f64>()
                        .map_err(|_| self.invalid("bad FLOAT"))?;
                    self.push(Node::Float(f))?;
                }
                b'G' => {
                    let b = self.take(8)?;
                    let mut a = [0u8; 8];
                    a.copy_from_slice(b);
                    self.push(Node::Float(f64::from_be_bytes(a)))?;
                }
                // ---- strings and bytes
                b'S' => {
                    let l = self.line()?;
                    let s = unquote_repr(l);
                    self.push(Node::Str(s.into()))?;
                }
                b'T' => {
                    let n = self.u32le()? as i32;
                    if n < 0 {
                        return Err(self.invalid("negative BINSTRING length"));
                    }
                    let n = self.len_arg(n as u64)?;
                    let b = self.take(n)?;
                    self.push(Node::Str(String::from_utf8_lossy(b).into()))?;
                }
                b'U' => {
                    let n = usize::from(self.byte()?);
                    let b = self.take(n)?;
                    self.push(Node::Str(String::from_utf8_lossy(b).into()))?;
                }
                b'V' => {
                    let l = self.line()?;
                    self.push(Node::Str(raw_unicode_escape(l).into()))?;
                }
                b'X' => {
                    let n = u64::from(self.u32le()?);
                    let n = self.len_arg(n)?;
                    let b = self.take(n)?;
                    self.push(Node::Str(String::from_utf8_lossy(b).into()))?;
                }
                0x8c => {
                    let n = usize::from(self.byte()?);
                    let b = self.take(n)?;
                    self.push(Node::Str(String::from_utf8_lossy(b).into()))?;
                }
                0x8d => {
                    let n = self.u64le()?;
                    let n = self.len_arg(n)?;
                    let b = self.take(n)?;
                    self.push(Node::Str(String::from_utf8_lossy(b).into()))?;
                }
                b'B' => {
                    let n = u64::from(self.u32le()?);
                    let n = self.len_arg(n)?;
                    self.take(n)?;
                    self.push(Node::Bytes(n as u64))?;
                }
                b'C' => {
                    let n = usize::from(self.byte()?);
                    self.take(n)?;
                    self.push(Node::Bytes(n as u64))?;
                }
                0x8e | 0x96 => {
                    let n = self.u64le()?;
                    let n = self.len_arg(n)?;
                    self.take(n)?;
                    self.push(Node::Bytes(n as u64))?;
                }
                0x97 => self.push(Node::Buffer)?,
                0x98 => {
                    self.top()?;
                }
                // ---- containers
                b')' => self.push(Node::Tuple(Vec::new()))?,
                0x85 => {
                    let a = self.pop()?;
                    self.push(Node::Tuple(vec![a]))?;
                }
                0x86 => {
                    let b = self.pop()?;
                    let a = self.pop()?;
                    self.push(Node::Tuple(vec![a, b]))?;
                }
                0x87 => {
                    let c = self.pop()?;
                    let b = self.pop()?;
                    let a = self.pop()?;
                    self.push(Node::Tuple(vec![a, b, c]))?;
                }
                b't' => {
                    let items = self.pop_mark()?;
                    self.push(Node::Tuple(items))?;
                }
                b']' => self.push(Node::List(Vec::new()))?,
                b'l' => {
                    let items = self.pop_mark()?;
                    self.push(Node::List(items))?;
                }
                b'}' => self.push(Node::Dict(Vec::new()))?,
                b'd' => {
                    let items = self.pop_mark()?;
                    let pairs = self.pairs(items)?;
                    self.push(Node::Dict(pairs))?;
                }
                0x8f => self.push(Node::Set(Vec::new()))?,
                0x91 => {
                    let items = self.pop_mark()?;
                    self.push(Node::Set(items))?;
                }
                b'a' => {
                    let v = self.pop()?;
                    let l = self.top()?;
                    self.append_items(l, vec![v])?;
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    let l = self.top()?;
                    self.append_items(l, items)?;
                }
                0x90 => {
                    let items = self.pop_mark()?;
                    let l = self.top()?;
                    self.append_items(l, items)?;
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    let d = self.top()?;
                    self.set_items(d, vec![(k, v)])?;
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    let pairs = self.pairs(items)?;
                    let d = self.top()?;
                    self.set_items(d, pairs)?;
                }
                // ---- globals and calls (recorded, never executed)
                b'c' => {
                    let module = self.line_str()?;
                    let name = self.line_str()?;
                    let id = self.record_global(module, name)?;
                    self.stack.push(id);
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let (m, n) = match (self.out.str(module), self.out.str(name)) {
                        (Some(m), Some(n)) => (m.to_string(), n.to_string()),
                        _ => ("?".to_string(), "<STACK_GLOBAL on non-strings>".to_string()),
                    };
                    let id = self.record_global(m, n)?;
                    self.stack.push(id);
                }
                b'i' => {
                    let module = self.line_str()?;
                    let name = self.line_str()?;
                    let cls = self.record_global(module, name)?;
                    let items = self.pop_mark()?;
                    let args = self.alloc(Node::Tuple(items))?;
                    self.call(CallKind::Inst, cls, args)?;
                }
                b'o' => {
                    let mut items = self.pop_mark()?;
                    if items.is_empty() {
                        return Err(self.invalid("OBJ without a class"));
                    }
                    let cls = items.remove(0);
                    let args = self.alloc(Node::Tuple(items))?;
                    self.call(CallKind::Inst, cls, args)?;
                }
                b'R' => {
                    let args = self.pop()?;
                    let func = self.pop()?;
                    self.call(CallKind::Reduce, func, args)?;
                }
                0x81 => {
                    let args = self.pop()?;
                    let cls = self.pop()?;
                    self.call(CallKind::NewObj, cls, args)?;
                }
                0x92 => {
                    let _kwargs = self.pop()?;
                    let args = self.pop()?;
                    let cls = self.pop()?;
                    self.call(CallKind::NewObj, cls, args)?;
                }
                b'b' => {
                    let state = self.pop()?;
                    let obj = self.top()?;
                    // BUILD on a plain value updates its __dict__ in CPython; keep the value.
                    if let Some(Node::Obj(o)) = self.out.nodes.get_mut(obj as usize) {
                        o.state = Some(state);
                    }
                }
                b'P' => {
                    let l = self.line_str()?;
                    let s = self.alloc(Node::Str(l.into()))?;
                    self.push(Node::PersId(s))?;
                }
                b'Q' => {
                    let pid = self.pop()?;
                    self.push(Node::PersId(pid))?;
                }
                0x82 => {
                    let c = u32::from(self.byte()?);
                    self.ext(c)?;
                }
                0x83 => {
                    let c = u32::from(self.u16le()?);
                    self.ext(c)?;
                }
                0x84 => {
                    let c = self.u32le()?;
                    self.ext(c)?;
                }
                other => return Err(self.invalid(format!("unknown opcode 0x{other:02x}"))),
            }
        }
    }

    /// An extension code resolves to a global through `copyreg`'s registry at load time; we
    /// cannot know which, so it is recorded as an unknown global (and refused by the policy).
    fn ext(&mut self, code: u32) -> R<()> {
        let key = ("?".to_string(), format!("<copyreg extension {code}>"));
        if self.seen.insert(key.clone()) {
            self.out.globals.push(key);
        }
        self.push(Node::Ext(code))
    }
}

/// A little-endian two's-complement integer (LONG1/LONG4).
fn long_le(b: &[u8]) -> Node {
    if b.is_empty() {
        return Node::Int(0);
    }
    if b.len() > 8 {
        return Node::BigInt(b.len());
    }
    let neg = b[b.len() - 1] & 0x80 != 0;
    let mut a = if neg { [0xffu8; 8] } else { [0u8; 8] };
    a[..b.len()].copy_from_slice(b);
    Node::Int(i64::from_le_bytes(a))
}

/// Protocol-0 `STRING` argument: a Python repr in quotes; escapes are kept as written except
/// the common ones, which is enough for module/name strings and keys.
fn unquote_repr(l: &[u8]) -> String {
    let s = String::from_utf8_lossy(l);
    let t = s.trim_end();
    let inner = if t.len() >= 2
        && ((t.starts_with('\'') && t.ends_with('\'')) || (t.starts_with('"') && t.ends_with('"')))
    {
        &t[1..t.len() - 1]
    } else {
        t
    };
    inner
        .replace("\\n", "\n")
        .replace("\\'", "'")
        .replace("\\\\", "\\")
}

/// Protocol-0 `UNICODE` argument (raw-unicode-escape): `\uXXXX` and `\UXXXXXXXX` decoded.
fn raw_unicode_escape(l: &[u8]) -> String {
    let s = String::from_utf8_lossy(l);
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.peek() {
                Some('u') | Some('U') => {
                    let long = chars.peek() == Some(&'U');
                    let digits = if long { 8 } else { 4 };
                    let mut probe = chars.clone();
                    probe.next();
                    let hex: String = probe.by_ref().take(digits).collect();
                    if hex.len() == digits {
                        if let Some(ch) =
                            u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32)
                        {
                            out.push(ch);
                            chars = probe;
                            continue;
                        }
                    }
                    out.push(c);
                }
                _ => out.push(c),
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: WalkLimits = WalkLimits {
        max_ops: 1_000_000,
        max_nodes: 1_000_000,
    };

    fn globals(p: &Pickle) -> Vec<String> {
        p.globals.iter().map(|(m, n)| format!("{m}.{n}")).collect()
    }

    #[test]
    fn protocol0_reduce_os_system() {
        let p = walk(b"cos\nsystem\n(S'echo hi'\ntR.", L);
        assert_eq!(globals(&p), vec!["os.system"]);
        assert!(p.error.is_none());
        let root = p.root.expect("root");
        assert!(matches!(p.node(root), Node::Obj(o) if o.kind == CallKind::Reduce));
    }

    #[test]
    fn stack_global_through_memo() {
        // proto 4: 'builtins' MEMOIZE, 'eval' MEMOIZE, POP both, GET 0, GET 1, STACK_GLOBAL.
        let mut b = vec![0x80, 4];
        b.extend([0x8c, 8]);
        b.extend(b"builtins");
        b.push(0x94);
        b.extend([0x8c, 4]);
        b.extend(b"eval");
        b.push(0x94);
        b.extend(b"00");
        b.extend([b'h', 0, b'h', 1, 0x93]);
        b.extend([0x8c, 1, b'1', 0x85, b'R', b'.']);
        let p = walk(&b, L);
        assert_eq!(p.error, None);
        assert_eq!(globals(&p), vec!["builtins.eval"]);
    }

    #[test]
    fn payload_before_parse_error_is_recorded() {
        let p = walk(b"\x80\x02cposix\nsystem\nq\x00\xff\xff", L);
        assert!(matches!(p.error, Some(PickleError::Invalid { .. })));
        assert_eq!(globals(&p), vec!["posix.system"]);
    }

    #[test]
    fn memo_sharing_is_by_identity() {
        // EMPTY_LIST PUT 0, POP, GET 0, 'x' APPEND, GET 0 -> the same list with one item.
        let p = walk(b"]q\x000h\x00X\x01\x00\x00\x00xah\x00\x86.", L);
        assert_eq!(p.error, None);
        let root = p.root.expect("root");
        let items = p.seq(root).expect("tuple").to_vec();
        assert_eq!(items[0], items[1]);
        assert_eq!(p.seq(items[0]).map(<[u32]>::len), Some(1));
    }

    #[test]
    fn memoize_key_is_memo_len() {
        // PUT 5 then MEMOIZE stores at key 1 (len(memo)), GET 1 works, GET 2 fails.
        let p = walk(b"\x80\x04K\x07q\x05\x94h\x01.", L);
        assert_eq!(p.error, None);
        let p = walk(b"\x80\x04K\x07q\x05\x94h\x02.", L);
        assert!(matches!(p.error, Some(PickleError::Invalid { .. })));
    }

    #[test]
    fn truncated_and_huge_lengths() {
        assert_eq!(
            walk(b"\x80\x02X\xff\xff\xff\xff", L).error,
            Some(PickleError::Truncated)
        );
        assert_eq!(
            walk(b"\x80\x04\x8d\xff\xff\xff\xff\xff\xff\xff\xff", L).error,
            Some(PickleError::Truncated)
        );
        assert_eq!(walk(b"", L).error, Some(PickleError::Truncated));
        assert_eq!(walk(b"(", L).error, Some(PickleError::Truncated));
    }

    #[test]
    fn budgets_hold() {
        let many = vec![b']'; 10_000];
        let p = walk(
            &many,
            WalkLimits {
                max_ops: 100,
                max_nodes: 1_000_000,
            },
        );
        assert_eq!(p.error, Some(PickleError::TooManyOps));
        let p = walk(
            &many,
            WalkLimits {
                max_ops: 1_000_000,
                max_nodes: 50,
            },
        );
        assert_eq!(p.error, Some(PickleError::TooManyNodes));
    }

    #[test]
    fn mark_fence_hides_lower_items() {
        // K1 MARK POP-with-empty-fence pops the mark; then TUPLE without mark fails.
        let p = walk(b"K\x01(0.", L);
        assert_eq!(p.error, None);
        let p = walk(b"K\x01(R.", L);
        assert!(matches!(p.error, Some(PickleError::Invalid { .. })));
    }

    #[test]
    fn longs_and_inst() {
        let p = walk(
            b"\x8a\x02\xff\x7f\x8a\x01\xff\x8a\x09\x01\x02\x03\x04\x05\x06\x07\x08\x09\x87.",
            L,
        );
        let root = p.root.expect("root");
        let v = p.seq(root).expect("tuple").to_vec();
        assert_eq!(p.int(v[0]), Some(32767));
        assert_eq!(p.int(v[1]), Some(-1));
        assert_eq!(p.node(v[2]), &Node::BigInt(9));
        let p = walk(b"(S'ls'\nisubprocess\ncheck_output\n.", L);
        assert_eq!(globals(&p), vec!["subprocess.check_output"]);
        assert_eq!(p.error, None);
        let p = walk(b"(Vos\nVsystem\n\x93.", L);
        assert!(globals(&p).contains(&"os.system".to_string()) || p.error.is_some());
    }

    #[test]
    fn ext_codes_are_unknown_globals() {
        let p = walk(b"\x80\x02\x82\x01)R.", L);
        assert_eq!(globals(&p), vec!["?.<copyreg extension 1>"]);
    }
}
