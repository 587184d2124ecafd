//! The `.pt` model file: what it is, what it holds, whether it is safe, which torch loads it.
//!
//! Fed in the same streaming pass as the archive, keeping only what it needs (pickles, version
//! records, TorchScript code, the zip tail), never the tensor bytes. The pieces:
//! [`zip`] (streaming zip view), [`legacy`] (pre-1.6 format), [`pickle`] (non-executing
//! walker), [`inventory`] (tensors from the walked pickle), [`safety`] (global allowlist),
//! [`version`] (minimum torch), [`arch`] (architectures the server builds), [`ops`] (operators
//! called; [`code_tokens`] is the one tokenizer of TorchScript code both it and [`version`]
//! read), [`signature`] (the root `forward`), [`rules`] (codes),
//! [`script_class`] (a TorchScript file's root class) and [`script_code`] (what its code
//! proves about its first and last layers), [`head`] and [`channels`] (the checks against the
//! declared classes and input).

pub mod arch;
pub mod channels;
pub mod code_tokens;
pub mod head;
pub mod inventory;
pub mod legacy;
pub mod op_history;
pub mod ops;
pub mod pickle;
pub mod rules;
pub mod safety;
pub mod script_class;
pub mod script_code;
pub mod signature;
pub mod twins;
pub mod version;
pub mod zip;

mod analyze;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::diagnostics::Issue;
use crate::settings::Settings;

pub use arch::ArchMatch;
pub use script_class::ScriptClass;
pub use script_code::ProvenLayer;
pub use signature::ForwardSignature;

/// What kind of file the `.pt` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PtKind {
    StateDict,
    Checkpoint,
    TorchscriptTraced,
    TorchscriptScripted,
    PickledModule,
    Legacy,
    NotPytorch,
}

impl PtKind {
    /// How a user would name it.
    pub fn describe(self) -> &'static str {
        match self {
            PtKind::StateDict => "state dict (weights only)",
            PtKind::Checkpoint => "training checkpoint wrapping a state dict",
            PtKind::TorchscriptTraced => "TorchScript (traced)",
            PtKind::TorchscriptScripted => "TorchScript (scripted)",
            PtKind::PickledModule => "whole pickled nn.Module (torch.save(model))",
            PtKind::Legacy => "legacy torch.save format (pre-1.6, not a zip)",
            PtKind::NotPytorch => "not a PyTorch file",
        }
    }
}

/// One tensor of the inventory, with what the compile server needs to rebuild it from the
/// `<prefix>/data/<storage_key>` record of the zip.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorInfo {
    pub name: String,
    pub dtype: String,
    pub shape: Vec<u64>,
    /// Bytes the tensor's elements take (numel × element size).
    pub bytes: u64,
    /// Key of its storage (`data/<key>` in the zip; the legacy format's key).
    #[serde(default)]
    pub storage_key: Option<String>,
    /// Offset into the storage, in elements.
    #[serde(default)]
    pub storage_offset: u64,
    /// Strides in elements.
    #[serde(default)]
    pub strides: Vec<u64>,
    #[serde(default)]
    pub numel: u64,
}

/// Whether loading the file could run code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Safety {
    /// Only allowlisted globals (or TorchScript's own).
    Safe,
    /// Needs classes from the user's source (whole pickled module); not an attack.
    NeedsSource,
    /// Names a global outside the allowlist, or a known-dangerous one.
    Unsafe,
    /// Could not be judged (not read, broken).
    Unknown,
}

/// What the inspection learned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PtInspection {
    pub kind: PtKind,
    pub file_bytes: u64,
    /// Tensors in file order (at most `Limits::max_tensors`; see `tensor_count`).
    pub tensors: Vec<TensorInfo>,
    pub parameter_count: u64,
    pub tensor_bytes: u64,
    /// Oldest torch that loads it (`"major.minor"`).
    pub min_torch: Option<String>,
    /// The architecture, as the product names it everywhere (inspect, report, page,
    /// `deployment.json`): a recognised state dict's `zoo/builder` (`torchvision/resnet50`,
    /// `timm/convnext_tiny`); for TorchScript the root class's library and name (`timm ConvNeXt`,
    /// `MyNet`: [`ScriptClass::display`]).
    pub architecture: Option<String>,
    /// All tensors found, also those beyond `max_tensors`.
    #[serde(default)]
    pub tensor_count: u64,
    /// Tensor count per dtype.
    #[serde(default)]
    pub dtypes: BTreeMap<String, u64>,
    /// Why `min_torch` is what it is, highest first ("gelu(approximate=...) needs PyTorch ≥ 1.12").
    #[serde(default)]
    pub min_torch_reasons: Vec<String>,
    /// The recognised architecture with its classifier width and input channels.
    #[serde(default)]
    pub arch: Option<ArchMatch>,
    /// The compile server can compile this file (TorchScript, or a state dict of a table architecture).
    #[serde(default)]
    pub server_compilable: bool,
    pub safety: Safety,
    /// Every pickle global referenced, `module.name`, in order of appearance.
    #[serde(default)]
    pub globals: Vec<String>,
    /// The zip's `version` / `.data/version` record.
    #[serde(default)]
    pub archive_version: Option<u64>,
    /// Top folder of the zip records (`archive`, the file stem).
    #[serde(default)]
    pub archive_prefix: Option<String>,
    #[serde(default)]
    pub byteorder: Option<String>,
    /// For a checkpoint: the key holding the state dict.
    #[serde(default)]
    pub checkpoint_key: Option<String>,
    /// A prefix every state-dict key carries (`module.` from `DataParallel`, `_orig_mod.` from
    /// `torch.compile`): recognition strips it, and so must whoever loads the weights into the
    /// recognised builder.
    #[serde(default)]
    pub key_prefix: Option<String>,
    /// Other builders whose state dicts have exactly the same names and shapes as `arch`
    /// (`timm/tf_efficientnet_b0` next to `timm/efficientnet_b0`): the file cannot tell them
    /// apart, `arch` is the first in the table's order.
    #[serde(default)]
    pub arch_alternatives: Vec<String>,
    /// Operators a TorchScript file calls, `namespace::name` (`aten::conv2d`,
    /// `torchvision::nms`), sorted; checked against the server's `operator_namespaces`.
    #[serde(default)]
    pub operators: Vec<String>,
    /// Custom classes a TorchScript file uses (`quantized::LinearPackedParamsBase`), sorted.
    #[serde(default)]
    pub custom_classes: Vec<String>,
    /// The root module's `forward` (TorchScript), as the server will call it.
    #[serde(default)]
    pub forward: Option<ForwardSignature>,
    /// One line a user can act on.
    #[serde(default)]
    pub verdict: String,
    /// TorchScript: the root module's class, which names the architecture.
    #[serde(default)]
    pub script_class: Option<ScriptClass>,
    /// TorchScript: the convolution `forward` feeds its input to, when the code proves it.
    #[serde(default)]
    pub input_layer: Option<ProvenLayer>,
    /// TorchScript: the layer whose output `forward` returns, when the code proves it.
    #[serde(default)]
    pub output_layer: Option<ProvenLayer>,
}

/// One record of a zip `.pt` ([`PtInspector::finish_with_spans`]): its full entry name
/// (`archive/data/0`; the top folder is [`PtInspection::archive_prefix`]), where its bytes start,
/// how many there are, and how they are stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordSpan {
    pub name: String,
    /// Offset of the record's first data byte (after its local header).
    pub data_offset: u64,
    /// Bytes stored (the central directory's compressed size).
    pub stored_bytes: u64,
    /// Bytes once decompressed (equal to `stored_bytes` when stored, method 0).
    pub size: u64,
    /// Zip compression method: 0 stored (what `torch.save` writes), 8 deflated.
    pub method: u16,
}

/// Spans of the records listed in the central directory whose local header was seen at the
/// offset the directory gives (a disagreement is already BYOM606; such a record gets no span).
fn record_spans(view: &zip::ZipView) -> Vec<RecordSpan> {
    let local: BTreeMap<u64, &zip::LocalEntry> =
        view.local.iter().map(|l| (l.header_offset, l)).collect();
    view.central
        .iter()
        .filter_map(|c| {
            let local = local.get(&c.header_offset).filter(|l| l.name == c.name)?;
            Some(RecordSpan {
                name: c.name.clone(),
                data_offset: local.data_offset,
                stored_bytes: c.compressed_size,
                size: c.uncompressed_size,
                method: c.method,
            })
        })
        .collect()
}

impl PtInspection {
    fn empty(kind: PtKind, file_bytes: u64) -> Self {
        PtInspection {
            kind,
            file_bytes,
            tensors: Vec::new(),
            parameter_count: 0,
            tensor_bytes: 0,
            min_torch: None,
            architecture: None,
            tensor_count: 0,
            dtypes: BTreeMap::new(),
            min_torch_reasons: Vec::new(),
            arch: None,
            server_compilable: false,
            safety: Safety::Unknown,
            globals: Vec::new(),
            archive_version: None,
            archive_prefix: None,
            byteorder: None,
            checkpoint_key: None,
            key_prefix: None,
            arch_alternatives: Vec::new(),
            operators: Vec::new(),
            custom_classes: Vec::new(),
            forward: None,
            verdict: String::new(),
            script_class: None,
            input_layer: None,
            output_layer: None,
        }
    }
}

/// Bytes looked at before deciding what the file is (zip, legacy pickle, other).
const SNIFF_BYTES: usize = 32;

#[derive(Debug)]
enum Mode {
    Sniff(Vec<u8>),
    Zip(Box<zip::ZipScanner>),
    Legacy(Box<legacy::LegacyReader>),
    /// Not a `.pt`: the first `max_pickle_bytes` are kept to name any globals a pickle holds.
    Other(Vec<u8>),
}

/// Streaming inspector of one `.pt` file. Feed chunks of any size; the result is the same.
#[derive(Debug)]
pub struct PtInspector {
    settings: Settings,
    file: String,
    bytes: u64,
    mode: Mode,
}

impl PtInspector {
    pub fn new(settings: &Settings, file: &str) -> Self {
        PtInspector {
            settings: settings.clone(),
            file: file.to_string(),
            bytes: 0,
            mode: Mode::Sniff(Vec::new()),
        }
    }

    pub fn feed(&mut self, chunk: &[u8]) {
        self.bytes += chunk.len() as u64;
        let mut chunk = chunk;
        if let Mode::Sniff(head) = &mut self.mode {
            let take = chunk.len().min(SNIFF_BYTES - head.len());
            head.extend_from_slice(&chunk[..take]);
            chunk = &chunk[take..];
            if head.len() < SNIFF_BYTES {
                return;
            }
            let head = std::mem::take(head);
            self.decide(&head);
        }
        self.feed_mode(chunk);
    }

    fn decide(&mut self, head: &[u8]) {
        let l = &self.settings.limits;
        self.mode = if head.starts_with(b"PK\x03\x04") {
            Mode::Zip(Box::new(zip::ZipScanner::new(zip::ZipLimits {
                max_pickle_bytes: l.max_pickle_bytes,
                max_code_bytes: l.max_code_bytes,
                max_directory_bytes: l.max_zip_directory_bytes,
                max_records: l.max_zip_records,
            })))
        } else if legacy::looks_legacy(head) {
            Mode::Legacy(Box::new(legacy::LegacyReader::new(
                analyze::walk_limits(&self.settings),
                l.max_pickle_bytes,
            )))
        } else {
            Mode::Other(Vec::new())
        };
        self.feed_mode(head);
    }

    fn feed_mode(&mut self, chunk: &[u8]) {
        if chunk.is_empty() {
            return;
        }
        match &mut self.mode {
            Mode::Sniff(_) => {}
            Mode::Zip(z) => z.feed(chunk),
            Mode::Legacy(r) => r.feed(chunk),
            Mode::Other(buf) => {
                let cap =
                    usize::try_from(self.settings.limits.max_pickle_bytes).unwrap_or(usize::MAX);
                let take = chunk.len().min(cap.saturating_sub(buf.len()));
                buf.extend_from_slice(&chunk[..take]);
            }
        }
    }

    pub fn finish(self) -> (PtInspection, Vec<Issue>) {
        let (inspection, issues, _) = self.finish_with_spans();
        (inspection, issues)
    }

    /// [`PtInspector::finish`], and where each zip record's bytes lie in the file as this
    /// inspection found them (empty for a file that is not a zip). The compile server reads
    /// state-dict tensors from exactly these bytes rather than opening the file with another
    /// zip reader.
    pub fn finish_with_spans(mut self) -> (PtInspection, Vec<Issue>, Vec<RecordSpan>) {
        if let Mode::Sniff(head) = &mut self.mode {
            let head = std::mem::take(head);
            self.decide(&head);
        }
        let ctx = analyze::Ctx {
            settings: &self.settings,
            file: &self.file,
            file_bytes: self.bytes,
        };
        match self.mode {
            Mode::Zip(z) => {
                let view = z.finish();
                let spans = record_spans(&view);
                let (inspection, issues) = analyze::zip_file(&ctx, view);
                (inspection, issues, spans)
            }
            Mode::Legacy(mut r) => {
                r.finish();
                let (inspection, issues) = analyze::legacy_file(&ctx, &r);
                (inspection, issues, Vec::new())
            }
            Mode::Other(buf) | Mode::Sniff(buf) => {
                let (inspection, issues) = analyze::other_file(&ctx, &buf);
                (inspection, issues, Vec::new())
            }
        }
    }
}

/// Inspect a whole `.pt` held in memory.
pub fn inspect_bytes(bytes: &[u8], settings: &Settings, file: &str) -> (PtInspection, Vec<Issue>) {
    let mut inspector = PtInspector::new(settings, file);
    inspector.feed(bytes);
    inspector.finish()
}

/// Cross-checks between what the `.pt` holds and what the metadata declares: the input's
/// channels against the first convolution ([`channels::check`]: BYOM621 where the file proves
/// it, BYOM611 where it is a guess) and the classes against the head ([`head::check`]: BYOM620
/// where the file proves it, BYOM612 otherwise). Shared with `byom pack`.
pub fn cross_check(
    inspection: &PtInspection,
    file: &str,
    input_shape: Option<&[i64]>,
    num_classes: Option<u64>,
) -> Vec<Issue> {
    channels::check(inspection, file, input_shape)
        .into_iter()
        .chain(head::check(inspection, file, num_classes))
        .collect()
}

#[cfg(test)]
mod tests;
