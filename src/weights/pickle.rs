//! A restricted pickle virtual machine for the protocol 2 to 5 streams that `torch.save` writes.
//!
//! The machine never runs code. `GLOBAL` and `STACK_GLOBAL` only name a callable; `REDUCE`
//! "calls" it by building a value in Rust, and only for the allow-list in [`reduce_global`].
//! Globals from modules that can run commands or import code (`os`, `subprocess`,
//! `builtins.eval`, ...) are rejected as soon as they are named. Any other class is kept as an
//! opaque [`Value::Object`] when it is instantiated with `NEWOBJ`. Objects live in an arena so
//! that memoized containers mutated after `PUT` (as `EMPTY_DICT`, `BINPUT`, `SETITEMS` do) stay
//! shared, as Python references would.

use std::collections::HashMap;

use super::WeightsError;

/// Maximum number of objects one pickle may create; a larger stream is rejected.
pub const MAX_OBJECTS: usize = 1 << 24;
/// Maximum nesting depth of the returned value; deeper (or self-referencing) data is rejected.
pub const MAX_DEPTH: usize = 256;
/// Maximum number of value nodes built from the arena in one pickle, counting the returned
/// tree after memo references are expanded and the arguments of each `REDUCE`. This bounds
/// time and memory for streams that reference one container many times.
pub const MAX_VALUE_NODES: usize = 1 << 20;

/// Element type of a torch storage, from the storage class name in the persistent id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageDtype {
    F16,
    BF16,
    F32,
    F64,
    U8,
    I8,
    I16,
    I32,
    I64,
    Bool,
    ComplexF32,
    ComplexF64,
}

impl StorageDtype {
    /// Maps a torch storage class name (`FloatStorage`, `BFloat16Storage`, ...) to its dtype.
    pub fn from_storage_class(name: &str) -> Option<Self> {
        Some(match name {
            "HalfStorage" => Self::F16,
            "BFloat16Storage" => Self::BF16,
            "FloatStorage" => Self::F32,
            "DoubleStorage" => Self::F64,
            "ByteStorage" => Self::U8,
            "CharStorage" => Self::I8,
            "ShortStorage" => Self::I16,
            "IntStorage" => Self::I32,
            "LongStorage" => Self::I64,
            "BoolStorage" => Self::Bool,
            "ComplexFloatStorage" => Self::ComplexF32,
            "ComplexDoubleStorage" => Self::ComplexF64,
            _ => return None,
        })
    }

    /// Size of one element in bytes.
    pub fn element_size(self) -> usize {
        match self {
            Self::U8 | Self::I8 | Self::Bool => 1,
            Self::F16 | Self::BF16 | Self::I16 => 2,
            Self::F32 | Self::I32 => 4,
            Self::F64 | Self::I64 | Self::ComplexF32 => 8,
            Self::ComplexF64 => 16,
        }
    }

    /// Returns the libtorch scalar type of this dtype.
    pub fn kind(self) -> tch::Kind {
        match self {
            Self::F16 => tch::Kind::Half,
            Self::BF16 => tch::Kind::BFloat16,
            Self::F32 => tch::Kind::Float,
            Self::F64 => tch::Kind::Double,
            Self::U8 => tch::Kind::Uint8,
            Self::I8 => tch::Kind::Int8,
            Self::I16 => tch::Kind::Int16,
            Self::I32 => tch::Kind::Int,
            Self::I64 => tch::Kind::Int64,
            Self::Bool => tch::Kind::Bool,
            Self::ComplexF32 => tch::Kind::ComplexFloat,
            Self::ComplexF64 => tch::Kind::ComplexDouble,
        }
    }
}

/// A storage named by a persistent id: `('storage', torch.FloatStorage, key, location, numel)`.
#[derive(Debug, Clone, PartialEq)]
pub struct StorageRef {
    /// Record name of the storage bytes (`data/<key>` in the zip archive).
    pub key: String,
    pub dtype: StorageDtype,
    /// Device the tensor was saved from, e.g. `cpu` or `cuda:0`; tensors are always read to CPU.
    pub location: String,
    /// Number of elements in the storage.
    pub numel: u64,
}

/// A tensor view on a storage, as `torch._utils._rebuild_tensor_v2` describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorRef {
    pub storage: StorageRef,
    /// Offset of the first element, in elements.
    pub storage_offset: i64,
    pub size: Vec<i64>,
    /// Strides in elements.
    pub stride: Vec<i64>,
    pub requires_grad: bool,
}

/// A decoded pickle value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    /// An integer that does not fit in `i64`, as little-endian two's complement bytes.
    BigInt(Vec<u8>),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    List(Vec<Value>),
    Tuple(Vec<Value>),
    /// A `dict` or `collections.OrderedDict`, in insertion order.
    Dict(Vec<(Value, Value)>),
    Set(Vec<Value>),
    /// A named global that was not called, e.g. a class passed as a value.
    Global {
        module: String,
        name: String,
    },
    /// An instance of a class the reader does not interpret: its class, constructor arguments
    /// and `BUILD` state are kept as data.
    Object {
        class: String,
        args: Vec<Value>,
        state: Option<Box<Value>>,
    },
    /// A `torch.device`, e.g. `cpu` or `cuda:0`.
    Device(String),
    Storage(StorageRef),
    Tensor(TensorRef),
}

impl Value {
    /// Looks up a string key in a dict value.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Dict(items) => items
                .iter()
                .find(|(k, _)| matches!(k, Value::Str(s) if s == key))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// Short type name for messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) | Value::BigInt(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Bytes(_) => "bytes",
            Value::List(_) => "list",
            Value::Tuple(_) => "tuple",
            Value::Dict(_) => "dict",
            Value::Set(_) => "set",
            Value::Global { .. } => "global",
            Value::Object { .. } => "object",
            Value::Device(_) => "torch.device",
            Value::Storage(_) => "storage",
            Value::Tensor(_) => "tensor",
        }
    }
}

/// Modules whose globals are rejected as soon as a pickle names them, because calling
/// anything in them can run commands, open files or import code.
const FORBIDDEN_MODULES: &[&str] = &[
    "os",
    "posix",
    "nt",
    "subprocess",
    "sys",
    "shutil",
    "socket",
    "importlib",
    "runpy",
    "pty",
    "commands",
    "webbrowser",
    "ctypes",
    "pickle",
    "_pickle",
    "marshal",
    "code",
    "codeop",
    "multiprocessing",
    "asyncio",
    "io",
    "pathlib",
    "tempfile",
    "signal",
];

/// Builtins that evaluate code, reach attributes or open files.
const FORBIDDEN_BUILTINS: &[&str] = &[
    "eval",
    "exec",
    "execfile",
    "compile",
    "open",
    "file",
    "input",
    "getattr",
    "setattr",
    "delattr",
    "__import__",
    "globals",
    "locals",
    "vars",
    "breakpoint",
    "apply",
    "memoryview",
    "help",
    "exit",
    "quit",
];

fn is_forbidden_global(module: &str, name: &str) -> bool {
    let root = module.split('.').next().unwrap_or(module);
    if FORBIDDEN_MODULES.contains(&root) {
        return true;
    }
    (module == "builtins" || module == "__builtin__") && FORBIDDEN_BUILTINS.contains(&name)
}

type Id = usize;

enum Node {
    Leaf(Value),
    List(Vec<Id>),
    Tuple(Vec<Id>),
    Dict(Vec<(Id, Id)>),
    Set(Vec<Id>),
    Object {
        class: String,
        args: Vec<Id>,
        state: Option<Id>,
    },
}

enum Slot {
    Mark,
    Obj(Id),
}

/// Resolves a persistent id (the value before `BINPERSID`) to the value it stands for.
pub type PersistentLoad<'a> = dyn FnMut(Value) -> Result<Value, String> + 'a;

/// Executes one pickle from `data` and returns the value and the number of bytes consumed.
///
/// `source` names the file in errors. `persistent_load` resolves persistent ids; `None` rejects
/// them (a plain pickle has none).
pub fn unpickle(
    data: &[u8],
    source: &str,
    persistent_load: Option<&mut PersistentLoad<'_>>,
) -> Result<(Value, usize), WeightsError> {
    let mut machine = Machine {
        data,
        pos: 0,
        source,
        arena: Vec::new(),
        stack: Vec::new(),
        memo: HashMap::new(),
        persistent_load,
        node_budget: MAX_VALUE_NODES,
    };
    let root = machine.run()?;
    // Checking the expanded size first rejects memo bombs without building them.
    let size = machine.tree_size(root, 0, &mut HashMap::new())?;
    if size > machine.node_budget as u64 {
        return Err(machine.error(format!("value has more than {MAX_VALUE_NODES} nodes")));
    }
    let value = machine.value_of(root)?;
    Ok((value, machine.pos))
}

struct Machine<'d, 'p, 'q> {
    data: &'d [u8],
    pos: usize,
    source: &'d str,
    arena: Vec<Node>,
    stack: Vec<Slot>,
    memo: HashMap<u64, Id>,
    persistent_load: Option<&'p mut PersistentLoad<'q>>,
    /// Value nodes that may still be built; see [`MAX_VALUE_NODES`].
    node_budget: usize,
}

impl Machine<'_, '_, '_> {
    fn error(&self, reason: impl Into<String>) -> WeightsError {
        WeightsError::Pickle {
            path: self.source.to_string(),
            offset: self.pos,
            reason: reason.into(),
        }
    }

    fn alloc(&mut self, node: Node) -> Result<Id, WeightsError> {
        if self.arena.len() >= MAX_OBJECTS {
            return Err(self.error(format!("more than {MAX_OBJECTS} objects")));
        }
        self.arena.push(node);
        Ok(self.arena.len() - 1)
    }

    fn push_leaf(&mut self, value: Value) -> Result<(), WeightsError> {
        let id = self.alloc(Node::Leaf(value))?;
        self.stack.push(Slot::Obj(id));
        Ok(())
    }

    fn push_node(&mut self, node: Node) -> Result<(), WeightsError> {
        let id = self.alloc(node)?;
        self.stack.push(Slot::Obj(id));
        Ok(())
    }

    fn read(&mut self, n: usize) -> Result<&[u8], WeightsError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len());
        match end {
            Some(end) => {
                let bytes = &self.data[self.pos..end];
                self.pos = end;
                Ok(bytes)
            }
            None => Err(self.error(format!("truncated: needs {n} more bytes"))),
        }
    }

    fn read_u8(&mut self) -> Result<u8, WeightsError> {
        Ok(self.read(1)?[0])
    }

    fn read_u16(&mut self) -> Result<u16, WeightsError> {
        let b = self.read(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn read_u32(&mut self) -> Result<u32, WeightsError> {
        let b = self.read(4)?;
        Ok(u32::from_le_bytes(b.try_into().expect("4 bytes")))
    }

    fn read_u64(&mut self) -> Result<u64, WeightsError> {
        let b = self.read(8)?;
        Ok(u64::from_le_bytes(b.try_into().expect("8 bytes")))
    }

    fn read_len(&mut self, len: u64) -> Result<&[u8], WeightsError> {
        let n = usize::try_from(len).map_err(|_| self.error(format!("length {len} too large")))?;
        self.read(n)
    }

    fn read_line(&mut self) -> Result<String, WeightsError> {
        let rest = &self.data[self.pos..];
        let Some(end) = rest.iter().position(|&b| b == b'\n') else {
            return Err(self.error("truncated: line without newline"));
        };
        let line = String::from_utf8(rest[..end].to_vec())
            .map_err(|_| self.error("line is not valid UTF-8"))?;
        self.pos += end + 1;
        Ok(line)
    }

    fn read_utf8(&mut self, len: u64) -> Result<String, WeightsError> {
        let bytes = self.read_len(len)?.to_vec();
        String::from_utf8(bytes).map_err(|_| self.error("string is not valid UTF-8"))
    }

    fn pop(&mut self) -> Result<Id, WeightsError> {
        match self.stack.pop() {
            Some(Slot::Obj(id)) => Ok(id),
            Some(Slot::Mark) => Err(self.error("unexpected MARK on the stack")),
            None => Err(self.error("stack underflow")),
        }
    }

    fn top(&self) -> Result<Id, WeightsError> {
        match self.stack.last() {
            Some(Slot::Obj(id)) => Ok(*id),
            Some(Slot::Mark) => Err(self.error("unexpected MARK on the stack")),
            None => Err(self.error("stack underflow")),
        }
    }

    /// Pops everything above the topmost MARK, and the MARK.
    fn pop_mark(&mut self) -> Result<Vec<Id>, WeightsError> {
        let Some(mark) = self.stack.iter().rposition(|s| matches!(s, Slot::Mark)) else {
            return Err(self.error("no MARK on the stack"));
        };
        let items = self
            .stack
            .drain(mark + 1..)
            .map(|s| match s {
                Slot::Obj(id) => id,
                Slot::Mark => unreachable!("rposition found the last MARK"),
            })
            .collect();
        self.stack.pop();
        Ok(items)
    }

    fn memo_get(&self, index: u64) -> Result<Id, WeightsError> {
        self.memo
            .get(&index)
            .copied()
            .ok_or_else(|| self.error(format!("memo index {index} was never stored")))
    }

    fn memo_put(&mut self, index: u64) -> Result<(), WeightsError> {
        let id = self.top()?;
        self.memo.insert(index, id);
        Ok(())
    }

    fn leaf_str(&self, id: Id) -> Option<&str> {
        match &self.arena[id] {
            Node::Leaf(Value::Str(s)) => Some(s),
            _ => None,
        }
    }

    fn push_global(&mut self, module: String, name: String) -> Result<(), WeightsError> {
        if is_forbidden_global(&module, &name) {
            return Err(WeightsError::ForbiddenGlobal {
                path: self.source.to_string(),
                global: format!("{module}.{name}"),
            });
        }
        self.push_leaf(Value::Global { module, name })
    }

    fn append_items(&mut self, list: Id, items: Vec<Id>) -> Result<(), WeightsError> {
        match &mut self.arena[list] {
            Node::List(v) | Node::Set(v) => {
                v.extend(items);
                Ok(())
            }
            _ => Err(self.error("APPEND/ADDITEMS target is not a list or set")),
        }
    }

    fn set_items(&mut self, dict: Id, items: Vec<Id>) -> Result<(), WeightsError> {
        if !items.len().is_multiple_of(2) {
            return Err(self.error("SETITEMS with an odd number of items"));
        }
        let pairs: Vec<(Id, Id)> = items.chunks(2).map(|p| (p[0], p[1])).collect();
        match &mut self.arena[dict] {
            Node::Dict(v) => {
                for (k, val) in pairs {
                    v.push((k, val));
                }
                Ok(())
            }
            _ => Err(self.error("SETITEM target is not a dict")),
        }
    }

    fn run(&mut self) -> Result<Id, WeightsError> {
        loop {
            let op = self.read_u8()?;
            match op {
                b'.' => return self.pop(),
                0x80 => {
                    let proto = self.read_u8()?;
                    if proto > 5 {
                        return Err(self.error(format!("unsupported protocol {proto}")));
                    }
                }
                0x95 => {
                    self.read_u64()?;
                }
                b'(' => self.stack.push(Slot::Mark),
                b'0' => {
                    self.stack
                        .pop()
                        .ok_or_else(|| self.error("stack underflow"))?;
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let id = self.top()?;
                    self.stack.push(Slot::Obj(id));
                }
                b'N' => self.push_leaf(Value::None)?,
                0x88 => self.push_leaf(Value::Bool(true))?,
                0x89 => self.push_leaf(Value::Bool(false))?,
                b'J' => {
                    let v = self.read_u32()? as i32;
                    self.push_leaf(Value::Int(v.into()))?
                }
                b'K' => {
                    let v = self.read_u8()?;
                    self.push_leaf(Value::Int(v.into()))?
                }
                b'M' => {
                    let v = self.read_u16()?;
                    self.push_leaf(Value::Int(v.into()))?
                }
                0x8a => {
                    let n = self.read_u8()?;
                    let bytes = self.read(n.into())?.to_vec();
                    self.push_leaf(decode_long(bytes))?
                }
                0x8b => {
                    let n = self.read_u32()?;
                    let bytes = self.read_len(n.into())?.to_vec();
                    self.push_leaf(decode_long(bytes))?
                }
                b'I' | b'L' => {
                    let line = self.read_line()?;
                    let text = line.trim_end_matches('L');
                    let value = match text {
                        "00" => Value::Bool(false),
                        "01" => Value::Bool(true),
                        _ => Value::Int(
                            text.parse()
                                .map_err(|_| self.error(format!("invalid INT {line:?}")))?,
                        ),
                    };
                    self.push_leaf(value)?
                }
                b'G' => {
                    let b = self.read(8)?;
                    let v = f64::from_be_bytes(b.try_into().expect("8 bytes"));
                    self.push_leaf(Value::Float(v))?
                }
                b'F' => {
                    let line = self.read_line()?;
                    let v = line
                        .parse()
                        .map_err(|_| self.error(format!("invalid FLOAT {line:?}")))?;
                    self.push_leaf(Value::Float(v))?
                }
                b'X' => {
                    let n = self.read_u32()?;
                    let s = self.read_utf8(n.into())?;
                    self.push_leaf(Value::Str(s))?
                }
                0x8c => {
                    let n = self.read_u8()?;
                    let s = self.read_utf8(n.into())?;
                    self.push_leaf(Value::Str(s))?
                }
                0x8d => {
                    let n = self.read_u64()?;
                    let s = self.read_utf8(n)?;
                    self.push_leaf(Value::Str(s))?
                }
                b'V' => {
                    let line = self.read_line()?;
                    self.push_leaf(Value::Str(line))?
                }
                b'T' | b'B' => {
                    let n = self.read_u32()?;
                    let b = self.read_len(n.into())?.to_vec();
                    self.push_leaf(Value::Bytes(b))?
                }
                b'U' | b'C' => {
                    let n = self.read_u8()?;
                    let b = self.read(n.into())?.to_vec();
                    self.push_leaf(Value::Bytes(b))?
                }
                0x8e | 0x96 => {
                    let n = self.read_u64()?;
                    let b = self.read_len(n)?.to_vec();
                    self.push_leaf(Value::Bytes(b))?
                }
                b']' => self.push_node(Node::List(Vec::new()))?,
                b'l' => {
                    let items = self.pop_mark()?;
                    self.push_node(Node::List(items))?
                }
                b'a' => {
                    let item = self.pop()?;
                    let list = self.top()?;
                    self.append_items(list, vec![item])?
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    let list = self.top()?;
                    self.append_items(list, items)?
                }
                b')' => self.push_node(Node::Tuple(Vec::new()))?,
                b't' => {
                    let items = self.pop_mark()?;
                    self.push_node(Node::Tuple(items))?
                }
                0x85..=0x87 => {
                    let n = usize::from(op - 0x84);
                    let mut items = Vec::with_capacity(n);
                    for _ in 0..n {
                        items.push(self.pop()?);
                    }
                    items.reverse();
                    self.push_node(Node::Tuple(items))?
                }
                b'}' => self.push_node(Node::Dict(Vec::new()))?,
                b'd' => {
                    let items = self.pop_mark()?;
                    let dict = self.alloc(Node::Dict(Vec::new()))?;
                    self.set_items(dict, items)?;
                    self.stack.push(Slot::Obj(dict));
                }
                b's' => {
                    let value = self.pop()?;
                    let key = self.pop()?;
                    let dict = self.top()?;
                    self.set_items(dict, vec![key, value])?
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    let dict = self.top()?;
                    self.set_items(dict, items)?
                }
                0x8f => self.push_node(Node::Set(Vec::new()))?,
                0x90 => {
                    let items = self.pop_mark()?;
                    let set = self.top()?;
                    self.append_items(set, items)?
                }
                0x91 => {
                    let items = self.pop_mark()?;
                    self.push_node(Node::Set(items))?
                }
                b'g' => {
                    let line = self.read_line()?;
                    let index = line
                        .parse()
                        .map_err(|_| self.error(format!("invalid GET index {line:?}")))?;
                    let id = self.memo_get(index)?;
                    self.stack.push(Slot::Obj(id));
                }
                b'h' => {
                    let index = self.read_u8()?;
                    let id = self.memo_get(index.into())?;
                    self.stack.push(Slot::Obj(id));
                }
                b'j' => {
                    let index = self.read_u32()?;
                    let id = self.memo_get(index.into())?;
                    self.stack.push(Slot::Obj(id));
                }
                b'p' => {
                    let line = self.read_line()?;
                    let index = line
                        .parse()
                        .map_err(|_| self.error(format!("invalid PUT index {line:?}")))?;
                    self.memo_put(index)?
                }
                b'q' => {
                    let index = self.read_u8()?;
                    self.memo_put(index.into())?
                }
                b'r' => {
                    let index = self.read_u32()?;
                    self.memo_put(index.into())?
                }
                0x94 => {
                    let index = self.memo.len() as u64;
                    self.memo_put(index)?
                }
                b'c' => {
                    let module = self.read_line()?;
                    let name = self.read_line()?;
                    self.push_global(module, name)?
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let (Some(module), Some(name)) = (self.leaf_str(module), self.leaf_str(name))
                    else {
                        return Err(self.error("STACK_GLOBAL operands are not strings"));
                    };
                    let (module, name) = (module.to_string(), name.to_string());
                    self.push_global(module, name)?
                }
                b'R' => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    let node = self.reduce(callable, args)?;
                    self.push_node(node)?
                }
                0x81 => {
                    let args = self.pop()?;
                    let class = self.pop()?;
                    let node = self.new_object(class, args)?;
                    self.push_node(node)?
                }
                0x92 => {
                    let _kwargs = self.pop()?;
                    let args = self.pop()?;
                    let class = self.pop()?;
                    let node = self.new_object(class, args)?;
                    self.push_node(node)?
                }
                b'b' => {
                    let state = self.pop()?;
                    let target = self.top()?;
                    self.build(target, state)?
                }
                b'Q' => {
                    let pid = self.pop()?;
                    self.load_persistent(pid)?
                }
                b'P' => {
                    let line = self.read_line()?;
                    let pid = self.alloc(Node::Leaf(Value::Str(line)))?;
                    self.load_persistent(pid)?
                }
                b'i' | b'o' => {
                    return Err(self.error(
                        "INST/OBJ opcodes call a class directly and are not allowed; \
                         torch.save never writes them",
                    ))
                }
                0x82..=0x84 => {
                    return Err(self.error("extension registry opcodes (EXT1/2/4) are not allowed"))
                }
                0x97 | 0x98 => {
                    return Err(self.error("out-of-band buffers (protocol 5) are not supported"))
                }
                other => return Err(self.error(format!("unknown opcode 0x{other:02x}"))),
            }
        }
    }

    fn global_name(&self, id: Id) -> Option<String> {
        match &self.arena[id] {
            Node::Leaf(Value::Global { module, name }) => Some(format!("{module}.{name}")),
            _ => None,
        }
    }

    fn tuple_items(&self, id: Id, callable: &str) -> Result<Vec<Id>, WeightsError> {
        match &self.arena[id] {
            Node::Tuple(items) => Ok(items.clone()),
            _ => Err(self.error(format!("{callable}: arguments are not a tuple"))),
        }
    }

    fn value_of(&mut self, id: Id) -> Result<Value, WeightsError> {
        let mut budget = self.node_budget;
        let value = self.materialize(id, 0, &mut budget);
        self.node_budget = budget;
        value
    }

    /// Builds the value a `REDUCE` of an allow-listed callable returns.
    fn reduce(&mut self, callable: Id, args: Id) -> Result<Node, WeightsError> {
        let Some(name) = self.global_name(callable) else {
            return Err(self.error("REDUCE of a value that is not a global"));
        };
        let items = self.tuple_items(args, &name)?;
        match reduce_global(&name) {
            Some(ReduceKind::OrderedDict) => {
                let mut pairs = Vec::new();
                if let Some(&first) = items.first() {
                    let list = match &self.arena[first] {
                        Node::List(v) | Node::Tuple(v) => v.clone(),
                        _ => return Err(self.error("OrderedDict argument is not a list")),
                    };
                    for pair in list {
                        match &self.arena[pair] {
                            Node::Tuple(kv) | Node::List(kv) if kv.len() == 2 => {
                                pairs.push((kv[0], kv[1]))
                            }
                            _ => return Err(self.error("OrderedDict item is not a pair")),
                        }
                    }
                }
                Ok(Node::Dict(pairs))
            }
            Some(ReduceKind::RebuildTensor) => {
                let args = self.values_of(&items)?;
                Ok(Node::Leaf(Value::Tensor(self.rebuild_tensor(&args)?)))
            }
            Some(ReduceKind::RebuildParameter) => {
                let args = self.values_of(&items)?;
                match args.first() {
                    Some(Value::Tensor(t)) => {
                        let mut t = t.clone();
                        t.requires_grad = matches!(args.get(1), Some(Value::Bool(true)));
                        Ok(Node::Leaf(Value::Tensor(t)))
                    }
                    _ => Err(self.error(format!("{name}: first argument is not a tensor"))),
                }
            }
            Some(ReduceKind::Device) => {
                let args = self.values_of(&items)?;
                let device = match args.as_slice() {
                    [Value::Str(kind)] => kind.clone(),
                    [Value::Str(kind), Value::Int(index)] => format!("{kind}:{index}"),
                    _ => return Err(self.error("torch.device arguments are not (str[, int])")),
                };
                Ok(Node::Leaf(Value::Device(device)))
            }
            Some(ReduceKind::Set) => {
                let members = match items.first().map(|&i| &self.arena[i]) {
                    None => Vec::new(),
                    Some(Node::List(v) | Node::Tuple(v) | Node::Set(v)) => v.clone(),
                    Some(_) => return Err(self.error(format!("{name}: argument is not a list"))),
                };
                Ok(Node::Set(members))
            }
            Some(ReduceKind::CodecsEncode) => {
                let args = self.values_of(&items)?;
                match args.as_slice() {
                    [Value::Str(text), Value::Str(codec)] if codec == "latin1" => {
                        let bytes: Option<Vec<u8>> = text
                            .chars()
                            .map(|c| u8::try_from(u32::from(c)).ok())
                            .collect();
                        bytes
                            .map(|b| Node::Leaf(Value::Bytes(b)))
                            .ok_or_else(|| self.error("_codecs.encode: text is not latin-1"))
                    }
                    _ => Err(self.error("_codecs.encode arguments are not (str, 'latin1')")),
                }
            }
            Some(ReduceKind::NumpyScalar) => {
                let args = self.values_of(&items)?;
                Ok(Node::Leaf(decode_numpy_scalar(&args)))
            }
            Some(ReduceKind::Opaque) => Ok(Node::Object {
                class: name,
                args: items,
                state: None,
            }),
            None => Err(WeightsError::ForbiddenGlobal {
                path: self.source.to_string(),
                global: name,
            }),
        }
    }

    fn values_of(&mut self, ids: &[Id]) -> Result<Vec<Value>, WeightsError> {
        ids.iter()
            .map(|&id| self.value_of(id))
            .collect::<Result<_, _>>()
    }

    fn rebuild_tensor(&self, args: &[Value]) -> Result<TensorRef, WeightsError> {
        let ints = |v: &Value| -> Option<Vec<i64>> {
            match v {
                Value::Tuple(items) | Value::List(items) => items
                    .iter()
                    .map(|i| match i {
                        Value::Int(n) => Some(*n),
                        _ => None,
                    })
                    .collect(),
                _ => None,
            }
        };
        match args {
            [Value::Storage(storage), Value::Int(offset), size, stride, rest @ ..] => {
                let size = ints(size).ok_or_else(|| self.error("tensor size is not ints"))?;
                let stride = ints(stride).ok_or_else(|| self.error("tensor stride is not ints"))?;
                Ok(TensorRef {
                    storage: storage.clone(),
                    storage_offset: *offset,
                    size,
                    stride,
                    requires_grad: matches!(rest.first(), Some(Value::Bool(true))),
                })
            }
            _ => Err(self
                .error("_rebuild_tensor_v2 arguments are not (storage, int, size, stride, ...)")),
        }
    }

    fn new_object(&mut self, class: Id, args: Id) -> Result<Node, WeightsError> {
        let Some(name) = self.global_name(class) else {
            return Err(self.error("NEWOBJ of a value that is not a global"));
        };
        let items = self.tuple_items(args, &name)?;
        if name == "collections.OrderedDict" || name == "builtins.dict" {
            return Ok(Node::Dict(Vec::new()));
        }
        Ok(Node::Object {
            class: name,
            args: items,
            state: None,
        })
    }

    fn build(&mut self, target: Id, state: Id) -> Result<(), WeightsError> {
        match &mut self.arena[target] {
            Node::Object { state: slot, .. } => {
                *slot = Some(state);
                Ok(())
            }
            // NOTE: attributes set on a dict (the `_metadata` of a state_dict, which records
            // module versions) and on tensors are dropped. The weights do not need them.
            Node::Dict(_) | Node::Leaf(Value::Tensor(_)) => Ok(()),
            _ => Err(self.error("BUILD target is not an object")),
        }
    }

    fn load_persistent(&mut self, pid: Id) -> Result<(), WeightsError> {
        let pid = self.value_of(pid)?;
        let Some(load) = self.persistent_load.as_mut() else {
            return Err(self.error("persistent id in a pickle that has no storages"));
        };
        let value = load(pid).map_err(|reason| self.error(reason))?;
        self.push_leaf(value)
    }

    /// Counts the nodes of the tree `id` expands to, visiting each arena node once.
    fn tree_size(
        &self,
        id: Id,
        depth: usize,
        cache: &mut HashMap<Id, u64>,
    ) -> Result<u64, WeightsError> {
        if depth > MAX_DEPTH {
            return Err(self.error(format!("value nested deeper than {MAX_DEPTH} levels")));
        }
        if let Some(&size) = cache.get(&id) {
            return Ok(size);
        }
        let children: Vec<Id> = match &self.arena[id] {
            Node::Leaf(_) => Vec::new(),
            Node::List(ids) | Node::Tuple(ids) | Node::Set(ids) => ids.clone(),
            Node::Dict(pairs) => pairs.iter().flat_map(|&(k, v)| [k, v]).collect(),
            Node::Object { args, state, .. } => args.iter().copied().chain(*state).collect(),
        };
        let mut size = 1u64;
        for child in children {
            size = size.saturating_add(self.tree_size(child, depth + 1, cache)?);
        }
        cache.insert(id, size);
        Ok(size)
    }

    fn materialize(&self, id: Id, depth: usize, budget: &mut usize) -> Result<Value, WeightsError> {
        if depth > MAX_DEPTH {
            return Err(self.error(format!("value nested deeper than {MAX_DEPTH} levels")));
        }
        if *budget == 0 {
            return Err(self.error(format!("value has more than {MAX_VALUE_NODES} nodes")));
        }
        *budget -= 1;
        let list = |ids: &[Id], budget: &mut usize| -> Result<Vec<Value>, WeightsError> {
            ids.iter()
                .map(|&i| self.materialize(i, depth + 1, budget))
                .collect()
        };
        Ok(match &self.arena[id] {
            Node::Leaf(v) => v.clone(),
            Node::List(ids) => Value::List(list(ids, budget)?),
            Node::Tuple(ids) => Value::Tuple(list(ids, budget)?),
            Node::Set(ids) => Value::Set(list(ids, budget)?),
            Node::Dict(pairs) => {
                let mut out = Vec::with_capacity(pairs.len());
                for &(k, v) in pairs {
                    let k = self.materialize(k, depth + 1, budget)?;
                    let v = self.materialize(v, depth + 1, budget)?;
                    out.push((k, v));
                }
                Value::Dict(out)
            }
            Node::Object { class, args, state } => Value::Object {
                class: class.clone(),
                args: list(args, budget)?,
                state: match state {
                    Some(s) => Some(Box::new(self.materialize(*s, depth + 1, budget)?)),
                    None => None,
                },
            },
        })
    }
}

enum ReduceKind {
    OrderedDict,
    RebuildTensor,
    RebuildParameter,
    Device,
    Set,
    CodecsEncode,
    NumpyScalar,
    /// Safe to construct, but not interpreted: kept as a [`Value::Object`].
    Opaque,
}

/// Looks up a callable in the allow-list of `REDUCE` and returns how to evaluate it.
fn reduce_global(name: &str) -> Option<ReduceKind> {
    Some(match name {
        "collections.OrderedDict" | "builtins.dict" => ReduceKind::OrderedDict,
        "torch._utils._rebuild_tensor_v2" | "torch._utils._rebuild_tensor" => {
            ReduceKind::RebuildTensor
        }
        "torch._utils._rebuild_parameter" | "torch._utils._rebuild_parameter_with_state" => {
            ReduceKind::RebuildParameter
        }
        "torch.device" => ReduceKind::Device,
        "builtins.set" | "builtins.frozenset" | "__builtin__.set" | "__builtin__.frozenset" => {
            ReduceKind::Set
        }
        "_codecs.encode" => ReduceKind::CodecsEncode,
        "numpy.core.multiarray.scalar" | "numpy._core.multiarray.scalar" => ReduceKind::NumpyScalar,
        "numpy.dtype"
        | "numpy.core.multiarray._reconstruct"
        | "numpy._core.multiarray._reconstruct"
        | "copyreg._reconstructor"
        | "copy_reg._reconstructor"
        | "builtins.slice"
        | "builtins.complex"
        | "torch.Size" => ReduceKind::Opaque,
        _ => return None,
    })
}

/// Decodes a pickled Python int (little-endian two's complement).
fn decode_long(bytes: Vec<u8>) -> Value {
    if bytes.is_empty() {
        return Value::Int(0);
    }
    if bytes.len() > 8 {
        return Value::BigInt(bytes);
    }
    let negative = bytes[bytes.len() - 1] & 0x80 != 0;
    let mut buf = if negative { [0xffu8; 8] } else { [0u8; 8] };
    buf[..bytes.len()].copy_from_slice(&bytes);
    Value::Int(i64::from_le_bytes(buf))
}

/// Decodes `numpy.core.multiarray.scalar(dtype, bytes)` for the plain numeric dtypes; other
/// dtypes stay opaque.
fn decode_numpy_scalar(args: &[Value]) -> Value {
    let opaque = || Value::Object {
        class: "numpy.scalar".to_string(),
        args: args.to_vec(),
        state: None,
    };
    let [Value::Object {
        args: dtype_args, ..
    }, Value::Bytes(bytes)] = args
    else {
        return opaque();
    };
    let Some(Value::Str(code)) = dtype_args.first() else {
        return opaque();
    };
    let b = bytes.as_slice();
    match (code.as_str(), b.len()) {
        ("f8", 8) => Value::Float(f64::from_le_bytes(b.try_into().expect("8 bytes"))),
        ("f4", 4) => Value::Float(f32::from_le_bytes(b.try_into().expect("4 bytes")).into()),
        ("i8", 8) => Value::Int(i64::from_le_bytes(b.try_into().expect("8 bytes"))),
        ("i4", 4) => Value::Int(i32::from_le_bytes(b.try_into().expect("4 bytes")).into()),
        ("b1", 1) => Value::Bool(b[0] != 0),
        _ => opaque(),
    }
}
