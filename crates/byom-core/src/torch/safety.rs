//! Which pickle globals a `.pt` may reference.
//!
//! Why an allowlist: loading a pickle calls whatever its globals name, so a denylist is always
//! one gadget short. We follow PyTorch's own `weights_only` loader: weight pickles may name only
//! what rebuilding tensors needs. TorchScript archives are read by libtorch's own unpickler,
//! which resolves only TorchScript types, so their `__torch__.*` classes and
//! `torch.jit._pickle.*` helpers are expected there. The denylist is only used to *name* a
//! known-dangerous call precisely (BYOM602) instead of the generic "not allowed" (BYOM603).

/// How one global is judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GlobalClass {
    /// Needed to rebuild tensors (weights_only allowlist).
    Allowed,
    /// A TorchScript type or helper (allowed in TorchScript archives only).
    TorchScript,
    /// Runs code, spawns processes, touches files or the network, or is a call gadget.
    Dangerous,
    /// A `torch.nn` module class: part of a whole pickled `nn.Module`.
    TorchModule,
    /// Anything else.
    Unlisted,
}

const TORCH_UTILS_REBUILDS: &[&str] = &[
    "_rebuild_tensor",
    "_rebuild_tensor_v2",
    "_rebuild_tensor_v3",
    "_rebuild_parameter",
    "_rebuild_parameter_with_state",
    "_rebuild_qtensor",
    "_rebuild_sparse_tensor",
    "_rebuild_nested_tensor",
    "_rebuild_meta_tensor_no_storage",
    "_rebuild_wrapper_subclass",
    "_rebuild_device_tensor_from_cpu_tensor",
    "_rebuild_device_tensor_from_numpy",
];

/// `torch.<name>` values that are plain data: dtypes, layouts, quantisation schemes.
const TORCH_DATA: &[&str] = &[
    "Size",
    "device",
    "Tensor",
    "float32",
    "float",
    "float64",
    "double",
    "float16",
    "half",
    "bfloat16",
    "uint8",
    "int8",
    "int16",
    "short",
    "int32",
    "int",
    "int64",
    "long",
    "bool",
    "complex32",
    "chalf",
    "complex64",
    "cfloat",
    "complex128",
    "cdouble",
    "uint16",
    "uint32",
    "uint64",
    "float8_e4m3fn",
    "float8_e5m2",
    "float8_e4m3fnuz",
    "float8_e5m2fnuz",
    "float8_e8m0fnu",
    "qint8",
    "quint8",
    "qint32",
    "quint4x2",
    "quint2x4",
    "bits1x8",
    "bits2x4",
    "bits4x2",
    "bits8",
    "bits16",
    "strided",
    "sparse_coo",
    "sparse_csr",
    "sparse_csc",
    "sparse_bsr",
    "sparse_bsc",
    "_mkldnn",
    "per_tensor_affine",
    "per_channel_affine",
    "per_tensor_symmetric",
    "per_channel_symmetric",
    "per_channel_affine_float_qparams",
    "contiguous_format",
    "channels_last",
    "channels_last_3d",
    "preserve_format",
];

/// Modules whose every attribute is treated as dangerous.
const DANGEROUS_MODULES: &[&str] = &[
    "os",
    "posix",
    "nt",
    "subprocess",
    "_posixsubprocess",
    "sys",
    "runpy",
    "webbrowser",
    "pty",
    "socket",
    "shutil",
    "importlib",
    "imp",
    "pickle",
    "_pickle",
    "cPickle",
    "dill",
    "cloudpickle",
    "marshal",
    "ctypes",
    "code",
    "codeop",
    "commands",
    "popen2",
    "multiprocessing",
    "asyncio",
    "pdb",
    "bdb",
    "timeit",
    "profile",
    "cProfile",
    "trace",
    "platform",
    "ftplib",
    "http",
    "httplib",
    "urllib",
    "urllib2",
    "urllib3",
    "requests",
    "smtplib",
    "telnetlib",
    "imaplib",
    "nntplib",
    "poplib",
    "xmlrpc",
    "venv",
    "ensurepip",
    "pip",
    "setuptools",
    "distutils",
    "tempfile",
    "zipimport",
    "_osx_support",
    "_aix_support",
    "_pyrepl",
    "pydoc",
    "types",
    "ssl",
    "select",
    "selectors",
    "signal",
    "_thread",
    "threading",
];

/// Specific dangerous names in otherwise mixed modules.
const DANGEROUS_NAMES: &[(&str, &str)] = &[
    ("builtins", "eval"),
    ("builtins", "exec"),
    ("builtins", "execfile"),
    ("builtins", "compile"),
    ("builtins", "__import__"),
    ("builtins", "open"),
    ("builtins", "file"),
    ("builtins", "getattr"),
    ("builtins", "setattr"),
    ("builtins", "delattr"),
    ("builtins", "globals"),
    ("builtins", "locals"),
    ("builtins", "vars"),
    ("builtins", "input"),
    ("builtins", "breakpoint"),
    ("builtins", "apply"),
    ("builtins", "help"),
    ("io", "FileIO"),
    ("io", "open"),
    ("io", "open_code"),
    ("_io", "FileIO"),
    ("_io", "open"),
    ("logging", "FileHandler"),
    ("logging.handlers", "*"),
    ("operator", "attrgetter"),
    ("operator", "methodcaller"),
    ("operator", "itemgetter"),
    ("functools", "partial"),
    ("functools", "reduce"),
    ("torch", "load"),
    ("torch.serialization", "load"),
    ("torch.storage", "_load_from_bytes"),
    ("torch.hub", "*"),
    ("torch.jit", "load"),
    ("numpy", "load"),
    ("numpy.testing._private.utils", "runstring"),
    ("uuid", "_get_command_stdout"),
    ("uuid", "_popen"),
    ("test.support.script_helper", "*"),
];

/// Judge one global. `torchscript` says whether the file is a TorchScript archive.
pub fn classify(module: &str, name: &str, torchscript: bool) -> GlobalClass {
    let module_norm = match module {
        "__builtin__" | "__builtins__" => "builtins",
        m => m,
    };
    if is_dangerous(module_norm, name) {
        return GlobalClass::Dangerous;
    }
    if is_allowed(module_norm, name) {
        return GlobalClass::Allowed;
    }
    if torchscript
        && (module_norm == "__torch__"
            || module_norm.starts_with("__torch__.")
            || module_norm == "torch.jit._pickle")
    {
        return GlobalClass::TorchScript;
    }
    if module_norm.starts_with("torch.nn.modules.")
        || module_norm.starts_with("torchvision.models.")
        || module_norm == "torch.nn"
    {
        return GlobalClass::TorchModule;
    }
    GlobalClass::Unlisted
}

fn is_dangerous(module: &str, name: &str) -> bool {
    let root = module.split('.').next().unwrap_or(module);
    if DANGEROUS_MODULES.contains(&root) || DANGEROUS_MODULES.contains(&module) {
        return true;
    }
    DANGEROUS_NAMES
        .iter()
        .any(|&(m, n)| m == module && (n == "*" || n == name))
}

fn is_allowed(module: &str, name: &str) -> bool {
    match module {
        "collections" => name == "OrderedDict",
        "torch._utils" => TORCH_UTILS_REBUILDS.contains(&name),
        "torch._tensor" => name == "_rebuild_from_type_v2",
        "torch" => {
            TORCH_DATA.contains(&name)
                || (name.ends_with("Storage") && name.chars().all(|c| c.is_ascii_alphanumeric()))
        }
        "torch.storage" => matches!(name, "UntypedStorage" | "TypedStorage" | "_LegacyStorage"),
        "torch.nn.parameter" => matches!(name, "Parameter" | "Buffer"),
        "torch.serialization" => name == "_get_layout",
        "_codecs" => name == "encode",
        "builtins" => matches!(
            name,
            "set" | "frozenset" | "bytearray" | "complex" | "slice"
        ),
        "numpy.core.multiarray" | "numpy._core.multiarray" => {
            matches!(name, "scalar" | "_reconstruct")
        }
        "numpy" => matches!(name, "dtype" | "ndarray"),
        "numpy.dtypes" => name.ends_with("DType"),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn judgements() {
        assert_eq!(classify("os", "system", false), GlobalClass::Dangerous);
        assert_eq!(classify("posix", "system", false), GlobalClass::Dangerous);
        assert_eq!(
            classify("__builtin__", "eval", false),
            GlobalClass::Dangerous
        );
        assert_eq!(
            classify("builtins", "getattr", true),
            GlobalClass::Dangerous
        );
        assert_eq!(
            classify("subprocess", "Popen", false),
            GlobalClass::Dangerous
        );
        assert_eq!(
            classify("runpy", "_run_code", false),
            GlobalClass::Dangerous
        );
        assert_eq!(
            classify("torch._utils", "_rebuild_tensor_v2", false),
            GlobalClass::Allowed
        );
        assert_eq!(
            classify("torch", "FloatStorage", false),
            GlobalClass::Allowed
        );
        assert_eq!(classify("torch", "uint16", false), GlobalClass::Allowed);
        assert_eq!(
            classify("collections", "OrderedDict", false),
            GlobalClass::Allowed
        );
        assert_eq!(
            classify("__torch__.foo", "Net", true),
            GlobalClass::TorchScript
        );
        assert_eq!(
            classify("__torch__.foo", "Net", false),
            GlobalClass::Unlisted
        );
        assert_eq!(
            classify("torch.nn.modules.linear", "Linear", false),
            GlobalClass::TorchModule
        );
        assert_eq!(classify("__main__", "Net", false), GlobalClass::Unlisted);
        assert_eq!(classify("torch", "load", false), GlobalClass::Dangerous);
        assert_eq!(
            classify("collections", "defaultdict", false),
            GlobalClass::Unlisted
        );
    }
}
