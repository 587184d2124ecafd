//! Rules about the `.pt` file (`BYOM6xx`, `BYOM7xx`).
//!
//! Two rules change severity with the policy: BYOM607 is a warning (the file is readable by
//! PyTorch, the server just cannot compile it), BYOM702 becomes an error when
//! `required_torch` is 1.8 or older. Their constants carry the default severity.

use crate::diagnostics::{Rule, Severity};

pub const NOT_PYTORCH: Rule = Rule {
    code: "BYOM600",
    name: "not-a-pytorch-file",
    severity: Severity::Error,
    summary: "The `.pt` file is not a PyTorch file at all.",
    hint: "Save the model with torch.jit.trace(model, example).save(\"model.pt\") or torch.save(model.state_dict(), \"model.pt\").",
    doc: "Neither a zip archive (`PK\\x03\\x04`) holding `data.pkl`, nor a legacy PyTorch pickle \
(which starts with the pickled magic number 0x1950a86a20f9469cfc6c). A bare pickle, an image, \
an ONNX file or random bytes renamed to `.pt` end here. When the bytes are a pickle that names \
dangerous or unknown globals, BYOM602/BYOM603 name them instead.",
};

pub const PICKLED_MODULE: Rule = Rule {
    code: "BYOM601",
    name: "pickled-module",
    severity: Severity::Error,
    summary: "A whole `nn.Module` saved with torch.save(model): not loadable without its source.",
    hint: "Saved with torch.save(model): export with torch.jit.trace(model, example).save(\"model.pt\") (or save model.state_dict()).",
    doc: "The pickle references the model's own classes (e.g. `__main__.Net`) and `torch.nn` \
module classes. Loading it needs the Python source of those classes, which the compile server \
does not have, and unpickling arbitrary classes is unsafe. This is not reported as an attack \
unless a known-dangerous call appears too (then BYOM602).",
};

pub const DANGEROUS_GLOBAL: Rule = Rule {
    code: "BYOM602",
    name: "dangerous-global",
    severity: Severity::Error,
    summary: "The pickle would call a dangerous function when loaded (os.system, eval, subprocess, ...).",
    hint: "Do not use this file. Re-export the model from its source with torch.jit.trace or torch.save(model.state_dict()).",
    doc: "Unpickling runs whatever GLOBAL/STACK_GLOBAL/INST/REDUCE opcodes name. byom never \
executes the pickle; it reads every opcode as data (including globals hidden behind memo \
tricks and globals placed before a deliberate parse error) and refuses files that name \
functions that run commands, evaluate code, open files or sockets, or are call gadgets.",
};

pub const DISALLOWED_GLOBAL: Rule = Rule {
    code: "BYOM603",
    name: "disallowed-global",
    severity: Severity::Error,
    summary: "The pickle references a global outside the weights-only allowlist.",
    hint: "Save only tensors: torch.save(model.state_dict(), path), or export TorchScript with torch.jit.trace.",
    doc: "Like PyTorch's `weights_only=True` loader, byom allows in weight pickles only what \
rebuilding tensors needs (OrderedDict, torch._utils._rebuild_*, storage and dtype classes, \
torch.Size, torch.device, Parameter). TorchScript archives may also name their own \
`__torch__.*` classes and `torch.jit._pickle.*` helpers. Anything else is refused and named.",
};

pub const CORRUPT: Rule = Rule {
    code: "BYOM604",
    name: "corrupt-model-file",
    severity: Severity::Error,
    summary: "The `.pt` zip or pickle structure is broken.",
    hint: "Re-save the model; check the upload was not truncated.",
    doc: "A truncated file, a missing or malformed central directory, record sizes that differ \
between the data and the directory, or a pickle that ends early or uses an unknown opcode.",
};

pub const STORAGE_SIZE: Rule = Rule {
    code: "BYOM605",
    name: "storage-size-mismatch",
    severity: Severity::Error,
    summary: "A tensor storage's declared size disagrees with its `data/*` record.",
    hint: "Re-save the model; the file was altered or damaged after saving.",
    doc: "Each storage the pickle declares (`('storage', torch.FloatStorage, key, location, numel)`) \
must have a record `data/<key>` of exactly numel × element size bytes (for the legacy format: \
the size written before the raw bytes). A mismatch means a damaged or crafted file.",
};

pub const NAME_MISMATCH: Rule = Rule {
    code: "BYOM606",
    name: "zip-name-mismatch",
    severity: Severity::Error,
    summary: "The zip's local headers and central directory disagree.",
    hint: "Re-save the model with torch.save or torch.jit.save; do not post-process the zip.",
    doc: "PyTorch reads records through the central directory; stream scanners read local \
headers. When the names, the compression methods or the set of records differ (a record the \
directory hides, or one it lists twice), a scanner and PyTorch see different files — a known \
way to smuggle a malicious pickle past scanners.",
};

pub const LEGACY: Rule = Rule {
    code: "BYOM607",
    name: "legacy-format",
    severity: Severity::Warning,
    summary: "Legacy (pre-1.6, non-zip) torch.save format: PyTorch can load it, the server cannot compile it.",
    hint: "Re-save with a current torch: torch.save(obj, path) (zip format), or better export TorchScript with torch.jit.trace.",
    doc: "Written by `torch.save(..., _use_new_zipfile_serialization=False)` or torch < 1.6: a \
pickled magic number, stacked pickles, then raw storages. byom inventories it from its \
pickles, but libtorch's C++ loader (used by the compile server) does not read this format.",
};

pub const CHECKPOINT: Rule = Rule {
    code: "BYOM608",
    name: "checkpoint-wrapper",
    severity: Severity::Warning,
    summary: "A training checkpoint dict wrapping the state dict.",
    hint: "Save only the weights: torch.save(checkpoint[\"model\"], \"model.pt\"), or export TorchScript.",
    doc: "Files like `{\"model\": state_dict, \"epoch\": 3, \"optimizer\": ...}` carry optimizer \
state and training metadata the deployment does not need. byom reads the state dict through \
the wrapper, but the file is larger than needed and the server expects a bare state dict.",
};

pub const UNKNOWN_ARCH: Rule = Rule {
    code: "BYOM609",
    name: "unknown-architecture",
    severity: Severity::Warning,
    summary: "A state dict of an architecture the server cannot build: it cannot be compiled.",
    hint: "The server cannot compile this state dict — export TorchScript instead: torch.jit.trace(model, example).save(\"model.pt\").",
    doc: "A state dict holds weights only; the server compiles it by rebuilding the architecture \
with torchvision's or timm's own constructor, so it must be recognised in the fingerprint table \
generated from those libraries (docs/architectures.md): every name and shape, the classifier's \
`num_classes` and the stem's `in_chans` aside. When nothing matches, the message names the \
nearest family when it can. The guide's own exporter writes state dicts, so this is a warning, \
not an error.",
};

pub const MODEL_LIMIT: Rule = Rule {
    code: "BYOM610",
    name: "model-limit-exceeded",
    severity: Severity::Error,
    summary: "A `.pt` record is larger, or a pickle longer, than the limits allow.",
    hint: "Raise the limit in the server settings if the file is genuine (max_pickle_bytes, max_code_bytes, max_zip_directory_bytes, max_pickle_ops).",
    doc: "Inspection keeps pickles, TorchScript code and the zip directory in memory, each \
bounded by a limit, and walks pickles under an opcode budget, so a hostile file can never \
exhaust memory or time. A file over a limit cannot be checked and is refused.",
};

pub const INPUT_CHANNELS: Rule = Rule {
    code: "BYOM611",
    name: "input-channels-mismatch",
    severity: Severity::Warning,
    summary:
        "The first convolution byom guesses differs from input_shape[1] in its input channels.",
    hint:
        "Set input_shape[1] to the channels the model was trained on (3 for RGB, 1 for grayscale).",
    doc: "For a state dict of an architecture byom does not recognise, the first 4-D weight \
`[out, in, kh, kw]` is most likely the first convolution, and `in` most likely the channels of \
the input. Only a guess, so a warning; where the file proves the first convolution (a \
recognised architecture, TorchScript code), a contradiction is BYOM621, an error.",
};

pub const CLASSIFIER: Rule = Rule {
    code: "BYOM612",
    name: "classifier-mismatch",
    severity: Severity::Warning,
    summary: "The final classifier byom guesses has other output features than num_classes.",
    hint: "Make num_classes (config.yaml, mochi.json) match the model's classifier, or replace the classifier head and retrain.",
    doc: "For an unrecognised state dict, or TorchScript whose code and names do not prove \
the head, the last 2-D weight `[classes, features]` is most likely the classifier. Only a \
guess, so a warning; where the file proves the head, a contradiction is BYOM620, an error.",
};

pub const DUPLICATE_NAME: Rule = Rule {
    code: "BYOM613",
    name: "zip-duplicate-name",
    severity: Severity::Error,
    summary: "The `.pt` zip holds two records with the same name.",
    hint: "Re-save the model with torch.save or torch.jit.save (or torch.jit.trace(...).save); do not add files to the zip afterwards.",
    doc: "PyTorch's zip reader (miniz, used by `torch.load`, `torch.jit.load` and libtorch) sorts \
the central directory by name and finds a record by binary search, so with two records of one \
name which one it reads is unspecified. A zip with a harmless `archive/data.pkl` and a second, \
malicious one lets a scanner inspect one while `torch.load(weights_only=False)` runs the other. \
torch.save never writes a name twice, so any duplicate is refused; the message names it.",
};

pub const CASE_COLLISION: Rule = Rule {
    code: "BYOM614",
    name: "zip-name-case-collision",
    severity: Severity::Error,
    summary: "Two `.pt` zip records have names that differ only in letter case.",
    hint: "Re-save the model with torch.save or torch.jit.save; do not add files to the zip afterwards.",
    doc: "PyTorch looks records up case-insensitively (miniz compares names after ASCII \
lower-casing; nothing else is normalised), so `archive/DATA.PKL` is as much its `data.pkl` as \
`archive/data.pkl`, and with both present either may be loaded. byom reads names the same way \
(a lone `DATA.PKL` is inspected as `data.pkl`) and refuses any two names equal under ASCII case \
folding, naming them.",
};

pub const OUTSIDE_PREFIX: Rule = Rule {
    code: "BYOM615",
    name: "zip-record-outside-archive",
    severity: Severity::Error,
    summary: "A `.pt` zip record is not under the archive folder PyTorch derives.",
    hint: "Re-save the model with torch.save or torch.jit.save: every record must be under one top folder (e.g. archive/).",
    doc: "PyTorch takes the archive folder from the first record of the central directory (the \
text before its first `/`, e.g. `archive`) and reads every record as `<folder>/<name>`; a first \
record without a folder makes the zip unreadable. A record under another folder, or none, is \
never what torch.save writes: it is refused, so that the folder byom reads records under is \
provably the one torch reads them under.",
};

pub const ARCHITECTURE_TWINS: Rule = Rule {
    code: "BYOM616",
    name: "architecture-twins",
    severity: Severity::Warning,
    summary: "The state dict's tensors are those of several builders that compute different things; the server rebuilds the first unless the package names another.",
    hint: "Name your builder in mochi.json model_info.architecture, or export TorchScript.",
    doc: "Some builders make exactly the same tensor names and shapes: torchvision's \
`fasterrcnn_mobilenet_v3_large_fpn` and `fasterrcnn_mobilenet_v3_large_320_fpn` differ only in \
the image size and proposal counts they are built with, timm's `tf_` models only in their \
padding. A state dict cannot tell them apart, and the server rebuilds one of them: the wrong \
one compiles and verifies against itself, yet computes something else than your model. When \
mochi.json `model_info.architecture` names one of the twins (`fasterrcnn_mobilenet_v3_large_fpn` \
or `torchvision/fasterrcnn_mobilenet_v3_large_fpn`), that one is the architecture everywhere \
(report, page, compile). Otherwise the first in the fingerprint table's order is rebuilt and \
this warning names the others: that it is yours is only likely.",
};

pub const CLASSIFIER_CONTRADICTS: Rule = Rule {
    code: "BYOM620",
    name: "classifier-contradicts-classes",
    severity: Severity::Error,
    summary: "The model's classifier head, as the file proves it, has a different number of outputs than the classes declared.",
    hint: "Declare the classes the model was trained with (num_classes and class_names), or replace the head, retrain and re-export.",
    doc: "The file proves the head's width in three ways. A state dict of a recognised \
architecture: the server builds that architecture with the classifier the weights give (a \
resnet18 whose `fc.weight` is `[1000, 512]` has 1000 classes). TorchScript whose code returns \
the output of a `Linear` straight from the root module's `forward` (through containers and \
wrappers): that layer's `out` is the model's output width. TorchScript whose last weight (in \
registration order) belongs to a child named like a classifier head (`fc`, `classifier`, \
`classifier.N`, `head`, `heads.head`, `last_linear`) and is a Linear `[out, in]` or a 1×1 \
convolution `[out, in, 1, 1]`. A package declaring another count would pass every metadata \
check and fail (or mislabel) at compile and inference. Example: \
`torchvision.models.resnet18()` traced (1000 outputs), packed with three class names. \
`byom pack` refuses the same contradiction with the same message. Where the head is only \
likely (an unrecognised state dict, no head name, an inventory cut short), BYOM612 warns \
instead.",
};

pub const INPUT_CHANNELS_CONTRADICT: Rule = Rule {
    code: "BYOM621",
    name: "input-channels-contradict",
    severity: Severity::Error,
    summary: "input_shape's channel axis contradicts the first convolution the file proves (e.g. channels last, NHWC).",
    hint: "input_shape is [batch, channels, height, width] (NCHW): write the channels the first convolution takes on axis 1, e.g. [1, 3, 224, 224].",
    doc: "The compile server feeds the model one tensor of the declared `input_shape`, and \
PyTorch convolutions take channels on axis 1. Where the file proves the convolution the input \
enters — a state dict of a recognised architecture (the server builds it), or TorchScript whose \
`forward` passes its input straight to a `Conv2d` (through containers and wrappers such as \
`Sequential` or ultralytics' `Conv`) — an input with other channels on axis 1 can never run. \
The message names the convolution and the shape to write; channels last (`[1, 224, 224, 3]` \
for a model taking 3 channels) is named as such, and the warnings that follow from the same \
wrong axis (BYOM507 unusual channels, BYOM509 resize, BYOM510's channel count) are left out. \
Where the first convolution is only a guess, BYOM611 warns instead.",
};

pub const UNKNOWN_OPERATOR: Rule = Rule {
    code: "BYOM630",
    name: "operator-not-on-server",
    severity: Severity::Error,
    summary: "The TorchScript model calls an operator from a namespace the server does not provide (a custom C++ extension).",
    hint: "Rewrite that layer with standard torch / torchvision operators and export again (torchvision.ops.nms, roi_align, deform_conv2d are provided); or ask the server's operator to install the extension's library and add its namespace to operator_namespaces.",
    doc: "libtorch resolves every operator a TorchScript file calls when it loads the file, so \
an operator the server's process lacks makes the model unloadable (`Unknown builtin op: \
my_ext::fused_nms`). byom reads the operators from the file's code (`ops.<namespace>.<name>(...)`, \
`torch.<name>(...)` for `aten`) and the custom classes from its code and pickles \
(`__torch__.torch.classes.<namespace>.<Class>`, e.g. in `constants.pkl`), and checks each \
namespace against the server's `operator_namespaces` setting (served in `GET /api/v1/format-spec`, \
so the page checks the same list): libtorch's own namespaces (`aten`, `prim`, `quantized`, …) and \
`torchvision`, whose operator library the compile worker loads for models that call it. \
Example: a model calling `torch.ops.my_ext.fused_nms` registered by `torch.utils.cpp_extension` or \
`torch.library` in the exporting process. Fix: replace the call with standard operators (e.g. \
`torchvision.ops.batched_nms`) before exporting. `byom inspect` lists every operator a file calls.",
};

pub const FORWARD_SIGNATURE: Rule = Rule {
    code: "BYOM631",
    name: "forward-not-one-tensor",
    severity: Severity::Error,
    summary: "The TorchScript model's forward cannot be called with one tensor of the declared input shape.",
    hint: "Export a module whose forward takes one Tensor [B, C, H, W]; for a torchvision detector, export the small wrapper of docs/detectors.md (forward(x: Tensor) returning boxes, scores and labels as one tensor).",
    doc: "The compile server, and every bundle's `load.py` and `load.cpp`, call the model as \
`forward(x)` with one tensor of `input_shape`. byom reads the root module's `forward` from the \
TorchScript code (every parameter is printed with its type) and refuses one whose first input \
is not a `Tensor` (e.g. `List[Tensor]`), that has no input, or that needs more inputs without \
defaults. Example: `torch.jit.script(torchvision.models.detection.ssdlite320_mobilenet_v3_large())` \
has `forward(images: List[Tensor], targets: Optional[List[Dict[str, Tensor]]]=None)`; it loads \
and passes every metadata check, then fails at compile. Fix: script a wrapper module whose \
`forward(x: Tensor)` splits the batch into the list the detector wants and returns its \
detections as tensors (docs/detectors.md).",
};

pub const TORCH_TOO_NEW: Rule = Rule {
    code: "BYOM701",
    name: "torch-too-new",
    severity: Severity::Error,
    summary: "The file needs a newer PyTorch than the server requires.",
    hint: "Re-export with the required PyTorch version, or avoid the feature named.",
    doc: "`required_torch` (default: the server's libtorch 2.11) is the oldest torch the file \
must load in. The minimum version is judged from the archive version record, the globals and \
dtypes used, and TorchScript debug records.",
};

pub const NOT_TORCH_18: Rule = Rule {
    code: "BYOM702",
    name: "not-pytorch-1.8",
    severity: Severity::Warning,
    summary: "PyTorch 1.8 cannot load this file (the guide asks for 1.8 compatibility).",
    hint: "Export with torch 1.8, or avoid the feature named; operators deploying to 1.8 runtimes set required_torch = \"1.8\" to make this an error.",
    doc: "The BYOM guide promises PyTorch 1.8 compatibility. The message names the feature and \
the version it needs, e.g. \"gelu(approximate=...) needs PyTorch ≥ 1.12\". An error instead of a \
warning when `required_torch` is 1.8 or older.",
};

pub const ALL: &[&Rule] = &[
    &NOT_PYTORCH,
    &PICKLED_MODULE,
    &DANGEROUS_GLOBAL,
    &DISALLOWED_GLOBAL,
    &CORRUPT,
    &STORAGE_SIZE,
    &NAME_MISMATCH,
    &LEGACY,
    &CHECKPOINT,
    &UNKNOWN_ARCH,
    &MODEL_LIMIT,
    &INPUT_CHANNELS,
    &CLASSIFIER,
    &DUPLICATE_NAME,
    &CASE_COLLISION,
    &OUTSIDE_PREFIX,
    &ARCHITECTURE_TWINS,
    &CLASSIFIER_CONTRADICTS,
    &INPUT_CHANNELS_CONTRADICT,
    &UNKNOWN_OPERATOR,
    &FORWARD_SIGNATURE,
    &TORCH_TOO_NEW,
    &NOT_TORCH_18,
];
