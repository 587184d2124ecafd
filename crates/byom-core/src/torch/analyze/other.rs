//! Neither a zip nor a legacy `.pt`: say what the bytes are, and name the globals of any
//! pickle in them (a bare pickle, stacked pickles, the payload of a `.npy`).

use super::common::{contains, finalize, judge, walk_limits, Ctx, Globals};
use crate::diagnostics::Issue;
use crate::torch::inventory::Reader;
use crate::torch::pickle::walk;
use crate::torch::rules;
use crate::torch::{PtInspection, PtKind};

/// Not a zip and not legacy: name the globals if the bytes are a pickle (also inside a `.npy`).
pub fn other_file(ctx: &Ctx<'_>, head: &[u8]) -> (PtInspection, Vec<Issue>) {
    let f = Some(ctx.file);
    let mut insp = PtInspection::empty(PtKind::NotPytorch, ctx.file_bytes);
    let mut rest = npy_payload(head).unwrap_or(head);
    // Pickles may be stacked (a benign one first, the payload after): walk them all.
    let mut globals = Globals::default();
    let mut module_classes = Vec::new();
    let mut first_ok = None;
    for _ in 0..MAX_STACKED_PICKLES {
        let p = walk(rest, walk_limits(ctx.settings));
        globals.add(&p);
        module_classes.extend(Reader::new(&p).module_classes());
        first_ok.get_or_insert(p.error.is_none());
        if p.error.is_some() || p.consumed == 0 || p.consumed >= rest.len() {
            break;
        }
        rest = &rest[p.consumed..];
    }
    let mut issues = Vec::new();
    if !globals.is_empty() {
        insp.globals = globals.names();
        let j = judge(ctx, &globals, false, &module_classes);
        insp.safety = j.safety;
        issues.extend(j.issues);
    }
    let parsed = first_ok == Some(true);
    let what = if head.is_empty() {
        "the file is empty".to_string()
    } else if parsed || !globals.is_empty() {
        "a bare pickle, not a file written by torch.save (no zip signature, no legacy magic number)"
            .to_string()
    } else if head.starts_with(b"\x93NUMPY") {
        "a NumPy array file".to_string()
    } else if head.starts_with(b"\x89PNG") {
        "a PNG image".to_string()
    } else if head.starts_with(b"7z\xbc\xaf") {
        "a 7-Zip archive".to_string()
    } else if head.starts_with(b"\x08") || contains(&head[..head.len().min(64)], b"onnx") {
        "possibly an ONNX model; export TorchScript instead".to_string()
    } else {
        "neither a zip archive (PK\\x03\\x04) nor a legacy PyTorch pickle".to_string()
    };
    if issues.is_empty() {
        issues.push(rules::NOT_PYTORCH.issue(f, format!("not a PyTorch file: {what}")));
    }
    finalize(insp, issues)
}

/// Most pickles walked one after another in a bare file.
const MAX_STACKED_PICKLES: usize = 64;

/// The pickle inside a `.npy` file of object dtype (after the header).
fn npy_payload(b: &[u8]) -> Option<&[u8]> {
    if !b.starts_with(b"\x93NUMPY") || b.len() < 10 {
        return None;
    }
    let (len, start) = if b[6] == 1 {
        (usize::from(u16::from_le_bytes([b[8], b[9]])), 10)
    } else {
        let l = b.get(8..12)?;
        (
            usize::try_from(u32::from_le_bytes([l[0], l[1], l[2], l[3]])).ok()?,
            12,
        )
    };
    b.get(start + len..)
}
