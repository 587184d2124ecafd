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

/// Pickle opcodes by their `pickletools` names (protocol in parentheses when newer than 0/1).
/// Named so the decoder reads like the spec; the byte values are fixed by CPython.
mod op {
    /// Protocol version (2+).
    pub const PROTO: u8 = 0x80;
    /// Length hint of the next frame (4+).
    pub const FRAME: u8 = 0x95;
    /// End of the pickle: the top of the stack is the value.
    pub const STOP: u8 = b'.';
    /// Push a mark.
    pub const MARK: u8 = b'(';
    /// Discard the top item.
    pub const POP: u8 = b'0';
    /// Discard everything down to the top mark.
    pub const POP_MARK: u8 = b'1';
    /// Duplicate the top item.
    pub const DUP: u8 = b'2';
    /// Memo store, decimal key on a line.
    pub const PUT: u8 = b'p';
    /// Memo store, 1-byte key.
    pub const BINPUT: u8 = b'q';
    /// Memo store, 4-byte key.
    pub const LONG_BINPUT: u8 = b'r';
    /// Memo store at the next key (4+).
    pub const MEMOIZE: u8 = 0x94;
    /// Memo fetch, decimal key on a line.
    pub const GET: u8 = b'g';
    /// Memo fetch, 1-byte key.
    pub const BINGET: u8 = b'h';
    /// Memo fetch, 4-byte key.
    pub const LONG_BINGET: u8 = b'j';
    /// None.
    pub const NONE: u8 = b'N';
    /// True (2+).
    pub const NEWTRUE: u8 = 0x88;
    /// False (2+).
    pub const NEWFALSE: u8 = 0x89;
    /// Decimal int on a line (`01`/`00` are booleans).
    pub const INT: u8 = b'I';
    /// 4-byte signed int.
    pub const BININT: u8 = b'J';
    /// 1-byte unsigned int.
    pub const BININT1: u8 = b'K';
    /// 2-byte unsigned int.
    pub const BININT2: u8 = b'M';
    /// Decimal long on a line.
    pub const LONG: u8 = b'L';
    /// Long, 1-byte length (2+).
    pub const LONG1: u8 = 0x8a;
    /// Long, 4-byte length (2+).
    pub const LONG4: u8 = 0x8b;
    /// Decimal float on a line.
    pub const FLOAT: u8 = b'F';
    /// 8-byte big-endian float.
    pub const BINFLOAT: u8 = b'G';
    /// Quoted repr string on a line.
    pub const STRING: u8 = b'S';
    /// Str, 4-byte signed length.
    pub const BINSTRING: u8 = b'T';
    /// Str, 1-byte length.
    pub const SHORT_BINSTRING: u8 = b'U';
    /// Raw-unicode-escaped text on a line.
    pub const UNICODE: u8 = b'V';
    /// UTF-8, 4-byte length.
    pub const BINUNICODE: u8 = b'X';
    /// UTF-8, 1-byte length (4+).
    pub const SHORT_BINUNICODE: u8 = 0x8c;
    /// UTF-8, 8-byte length (4+).
    pub const BINUNICODE8: u8 = 0x8d;
    /// Bytes, 4-byte length (3+).
    pub const BINBYTES: u8 = b'B';
    /// Bytes, 1-byte length (3+).
    pub const SHORT_BINBYTES: u8 = b'C';
    /// Bytes, 8-byte length (4+).
    pub const BINBYTES8: u8 = 0x8e;
    /// Bytearray, 8-byte length (5).
    pub const BYTEARRAY8: u8 = 0x96;
    /// Out-of-band buffer (5).
    pub const NEXT_BUFFER: u8 = 0x97;
    /// Make the top buffer read-only (5).
    pub const READONLY_BUFFER: u8 = 0x98;
    /// ().
    pub const EMPTY_TUPLE: u8 = b')';
    /// 1-tuple from the top item (2+).
    pub const TUPLE1: u8 = 0x85;
    /// 2-tuple from the top items (2+).
    pub const TUPLE2: u8 = 0x86;
    /// 3-tuple from the top items (2+).
    pub const TUPLE3: u8 = 0x87;
    /// Tuple of the items above the mark.
    pub const TUPLE: u8 = b't';
    /// [].
    pub const EMPTY_LIST: u8 = b']';
    /// List of the items above the mark.
    pub const LIST: u8 = b'l';
    /// {}.
    pub const EMPTY_DICT: u8 = b'}';
    /// Dict of the pairs above the mark.
    pub const DICT: u8 = b'd';
    /// set() (4+).
    pub const EMPTY_SET: u8 = 0x8f;
    /// Frozenset of the items above the mark (4+).
    pub const FROZENSET: u8 = 0x91;
    /// list.append(top).
    pub const APPEND: u8 = b'a';
    /// list.extend(items above the mark).
    pub const APPENDS: u8 = b'e';
    /// set.update(items above the mark) (4+).
    pub const ADDITEMS: u8 = 0x90;
    /// dict[key] = value.
    pub const SETITEM: u8 = b's';
    /// dict.update(pairs above the mark).
    pub const SETITEMS: u8 = b'u';
    /// Module and name on two lines: a global, resolved by import on load.
    pub const GLOBAL: u8 = b'c';
    /// Module and name from the stack (4+).
    pub const STACK_GLOBAL: u8 = 0x93;
    /// Global on two lines called with the items above the mark.
    pub const INST: u8 = b'i';
    /// First item above the mark called with the rest.
    pub const OBJ: u8 = b'o';
    /// callable(*args): where pickles execute code.
    pub const REDUCE: u8 = b'R';
    /// cls.__new__(cls, *args) (2+).
    pub const NEWOBJ: u8 = 0x81;
    /// cls.__new__(cls, *args, **kwargs) (4+).
    pub const NEWOBJ_EX: u8 = 0x92;
    /// obj.__setstate__(state) or __dict__ update.
    pub const BUILD: u8 = b'b';
    /// Persistent id on a line.
    pub const PERSID: u8 = b'P';
    /// Persistent id from the stack (torch's storages).
    pub const BINPERSID: u8 = b'Q';
    /// Copyreg extension code, 1 byte (2+).
    pub const EXT1: u8 = 0x82;
    /// Copyreg extension code, 2 bytes (2+).
    pub const EXT2: u8 = 0x83;
    /// Copyreg extension code, 4 bytes (2+).
    pub const EXT4: u8 = 0x84;
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
                op::PROTO => {
                    let p = self.byte()?;
                    self.out.protocol = self.out.protocol.max(p);
                }
                op::FRAME => {
                    // FRAME: a length hint only; the bytes follow inline.
                    self.u64le()?;
                }
                op::STOP => {
                    let v = self.pop()?;
                    return Ok(v);
                }
                // ---- stack manipulation
                op::MARK => self.marks.push(self.stack.len()),
                op::POP => {
                    if self.stack.len() > self.fence() {
                        self.stack.pop();
                    } else {
                        self.pop_mark()?;
                    }
                }
                op::POP_MARK => {
                    self.pop_mark()?;
                }
                op::DUP => {
                    let t = self.top()?;
                    self.stack.push(t);
                }
                // ---- memo
                op::PUT => {
                    let l = self.line_str()?;
                    let k = l
                        .trim()
                        .parse::<u64>()
                        .map_err(|_| self.invalid("bad PUT key"))?;
                    self.memo_put(k)?;
                }
                op::BINPUT => {
                    let k = u64::from(self.byte()?);
                    self.memo_put(k)?;
                }
                op::LONG_BINPUT => {
                    let k = u64::from(self.u32le()?);
                    self.memo_put(k)?;
                }
                op::MEMOIZE => {
                    let k = self.memo.len() as u64;
                    self.memo_put(k)?;
                }
                op::GET => {
                    let l = self.line_str()?;
                    let k = l
                        .trim()
                        .parse::<u64>()
                        .map_err(|_| self.invalid("bad GET key"))?;
                    self.memo_get(k)?;
                }
                op::BINGET => {
                    let k = u64::from(self.byte()?);
                    self.memo_get(k)?;
                }
                op::LONG_BINGET => {
                    let k = u64::from(self.u32le()?);
                    self.memo_get(k)?;
                }
                // ---- constants
                op::NONE => self.push(Node::None)?,
                op::NEWTRUE => self.push(Node::Bool(true))?,
                op::NEWFALSE => self.push(Node::Bool(false))?,
                op::INT => {
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
                op::BININT => {
                    let v = self.u32le()? as i32;
                    self.push(Node::Int(i64::from(v)))?;
                }
                op::BININT1 => {
                    let v = self.byte()?;
                    self.push(Node::Int(i64::from(v)))?;
                }
                op::BININT2 => {
                    let v = self.u16le()?;
                    self.push(Node::Int(i64::from(v)))?;
                }
                op::LONG => {
                    let l = self.line_str()?;
                    let t = l.trim().trim_end_matches('L');
                    let n = match t.parse::<i64>() {
                        Ok(i) => Node::Int(i),
                        Err(_) => Node::BigInt(t.len()),
                    };
                    self.push(n)?;
                }
                op::LONG1 => {
                    let n = usize::from(self.byte()?);
                    let b = self.take(n)?;
                    let node = long_le(b);
                    self.push(node)?;
                }
                op::LONG4 => {
                    let n = self.u32le()? as i32;
                    if n < 0 {
                        return Err(self.invalid("negative LONG4 length"));
                    }
                    let n = self.len_arg(n as u64)?;
                    let b = self.take(n)?;
                    let node = long_le(b);
                    self.push(node)?;
                }
                op::FLOAT => {
                    let l = self.line_str()?;
                    let f = l
                        .trim()
                        .parse::<f64>()
                        .map_err(|_| self.invalid("bad FLOAT"))?;
                    self.push(Node::Float(f))?;
                }
                op::BINFLOAT => {
                    let b = self.take(8)?;
                    let mut a = [0u8; 8];
                    a.copy_from_slice(b);
                    self.push(Node::Float(f64::from_be_bytes(a)))?;
                }
                // ---- strings and bytes
                op::STRING => {
                    let l = self.line()?;
                    let s = unquote_repr(l);
                    self.push(Node::Str(s.into()))?;
                }
                op::BINSTRING => {
                    let n = self.u32le()? as i32;
                    if n < 0 {
                        return Err(self.invalid("negative BINSTRING length"));
                    }
                    let n = self.len_arg(n as u64)?;
                    let b = self.take(n)?;
                    self.push(Node::Str(String::from_utf8_lossy(b).into()))?;
                }
                op::SHORT_BINSTRING => {
                    let n = usize::from(self.byte()?);
                    let b = self.take(n)?;
                    self.push(Node::Str(String::from_utf8_lossy(b).into()))?;
                }
                op::UNICODE => {
                    let l = self.line()?;
                    self.push(Node::Str(raw_unicode_escape(l).into()))?;
                }
                op::BINUNICODE => {
                    let n = u64::from(self.u32le()?);
                    let n = self.len_arg(n)?;
                    let b = self.take(n)?;
                    self.push(Node::Str(String::from_utf8_lossy(b).into()))?;
                }
                op::SHORT_BINUNICODE => {
                    let n = usize::from(self.byte()?);
                    let b = self.take(n)?;
                    self.push(Node::Str(String::from_utf8_lossy(b).into()))?;
                }
                op::BINUNICODE8 => {
                    let n = self.u64le()?;
                    let n = self.len_arg(n)?;
                    let b = self.take(n)?;
                    self.push(Node::Str(String::from_utf8_lossy(b).into()))?;
                }
                op::BINBYTES => {
                    let n = u64::from(self.u32le()?);
                    let n = self.len_arg(n)?;
                    self.take(n)?;
                    self.push(Node::Bytes(n as u64))?;
                }
                op::SHORT_BINBYTES => {
                    let n = usize::from(self.byte()?);
                    self.take(n)?;
                    self.push(Node::Bytes(n as u64))?;
                }
                op::BINBYTES8 | op::BYTEARRAY8 => {
                    let n = self.u64le()?;
                    let n = self.len_arg(n)?;
                    self.take(n)?;
                    self.push(Node::Bytes(n as u64))?;
                }
                op::NEXT_BUFFER => self.push(Node::Buffer)?,
                op::READONLY_BUFFER => {
                    self.top()?;
                }
                // ---- containers
                op::EMPTY_TUPLE => self.push(Node::Tuple(Vec::new()))?,
                op::TUPLE1 => {
                    let a = self.pop()?;
                    self.push(Node::Tuple(vec![a]))?;
                }
                op::TUPLE2 => {
                    let b = self.pop()?;
                    let a = self.pop()?;
                    self.push(Node::Tuple(vec![a, b]))?;
                }
                op::TUPLE3 => {
                    let c = self.pop()?;
                    let b = self.pop()?;
                    let a = self.pop()?;
                    self.push(Node::Tuple(vec![a, b, c]))?;
                }
                op::TUPLE => {
                    let items = self.pop_mark()?;
                    self.push(Node::Tuple(items))?;
                }
                op::EMPTY_LIST => self.push(Node::List(Vec::new()))?,
                op::LIST => {
                    let items = self.pop_mark()?;
                    self.push(Node::List(items))?;
                }
                op::EMPTY_DICT => self.push(Node::Dict(Vec::new()))?,
                op::DICT => {
                    let items = self.pop_mark()?;
                    let pairs = self.pairs(items)?;
                    self.push(Node::Dict(pairs))?;
                }
                op::EMPTY_SET => self.push(Node::Set(Vec::new()))?,
                op::FROZENSET => {
                    let items = self.pop_mark()?;
                    self.push(Node::Set(items))?;
                }
                op::APPEND => {
                    let v = self.pop()?;
                    let l = self.top()?;
                    self.append_items(l, vec![v])?;
                }
                op::APPENDS => {
                    let items = self.pop_mark()?;
                    let l = self.top()?;
                    self.append_items(l, items)?;
                }
                op::ADDITEMS => {
                    let items = self.pop_mark()?;
                    let l = self.top()?;
                    self.append_items(l, items)?;
                }
                op::SETITEM => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    let d = self.top()?;
                    self.set_items(d, vec![(k, v)])?;
                }
                op::SETITEMS => {
                    let items = self.pop_mark()?;
                    let pairs = self.pairs(items)?;
                    let d = self.top()?;
                    self.set_items(d, pairs)?;
                }
                // ---- globals and calls (recorded, never executed)
                op::GLOBAL => {
                    let module = self.line_str()?;
                    let name = self.line_str()?;
                    let id = self.record_global(module, name)?;
                    self.stack.push(id);
                }
                op::STACK_GLOBAL => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let (m, n) = match (self.out.str(module), self.out.str(name)) {
                        (Some(m), Some(n)) => (m.to_string(), n.to_string()),
                        _ => ("?".to_string(), "<STACK_GLOBAL on non-strings>".to_string()),
                    };
                    let id = self.record_global(m, n)?;
                    self.stack.push(id);
                }
                op::INST => {
                    let module = self.line_str()?;
                    let name = self.line_str()?;
                    let cls = self.record_global(module, name)?;
                    let items = self.pop_mark()?;
                    let args = self.alloc(Node::Tuple(items))?;
                    self.call(CallKind::Inst, cls, args)?;
                }
                op::OBJ => {
                    let mut items = self.pop_mark()?;
                    if items.is_empty() {
                        return Err(self.invalid("OBJ without a class"));
                    }
                    let cls = items.remove(0);
                    let args = self.alloc(Node::Tuple(items))?;
                    self.call(CallKind::Inst, cls, args)?;
                }
                op::REDUCE => {
                    let args = self.pop()?;
                    let func = self.pop()?;
                    self.call(CallKind::Reduce, func, args)?;
                }
                op::NEWOBJ => {
                    let args = self.pop()?;
                    let cls = self.pop()?;
                    self.call(CallKind::NewObj, cls, args)?;
                }
                op::NEWOBJ_EX => {
                    let _kwargs = self.pop()?;
                    let args = self.pop()?;
                    let cls = self.pop()?;
                    self.call(CallKind::NewObj, cls, args)?;
                }
                op::BUILD => {
                    let state = self.pop()?;
                    let obj = self.top()?;
                    // BUILD on a plain value updates its __dict__ in CPython; keep the value.
                    if let Some(Node::Obj(o)) = self.out.nodes.get_mut(obj as usize) {
                        o.state = Some(state);
                    }
                }
                op::PERSID => {
                    let l = self.line_str()?;
                    let s = self.alloc(Node::Str(l.into()))?;
                    self.push(Node::PersId(s))?;
                }
                op::BINPERSID => {
                    let pid = self.pop()?;
                    self.push(Node::PersId(pid))?;
                }
                op::EXT1 => {
                    let c = u32::from(self.byte()?);
                    self.ext(c)?;
                }
                op::EXT2 => {
                    let c = u32::from(self.u16le()?);
                    self.ext(c)?;
                }
                op::EXT4 => {
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
        b.extend([op::BINGET, 0, op::BINGET, 1, op::STACK_GLOBAL]);
        b.extend([
            op::SHORT_BINUNICODE,
            1,
            b'1',
            op::TUPLE1,
            op::REDUCE,
            op::STOP,
        ]);
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
