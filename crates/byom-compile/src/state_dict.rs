//! Compiling a state dict: rebuild its architecture in Rust, load its tensors straight from the
//! `.pt` zip, and trace the result into a TorchScript module.
//!
//! tch cannot read the `OrderedDict` pickle of a state dict, so the tensor inventory (names,
//! dtypes, shapes, storage keys, offsets, strides) comes from the core's non-executing pickle
//! reader, and so do the locations of the `<top>/data/<key>` records (the validator's own zip
//! reading, [`byom_core::torch::RecordSpan`]): the bytes are read here at those offsets, with
//! no second zip reader that could find other records than the validator did.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::panic::AssertUnwindSafe;
use std::path::Path;

use byom_core::torch::RecordSpan;
use tch::nn;
use tch::{CModule, Device, Kind, Tensor};

use crate::arch;

/// One tensor of a state dict, located in the zip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredTensor {
    pub name: String,
    pub dtype: String,
    pub shape: Vec<i64>,
    /// `data/<storage_key>` record holding its storage.
    pub storage_key: String,
    /// Offset into the storage, in elements.
    pub storage_offset: i64,
    /// Strides in elements.
    pub strides: Vec<i64>,
}

/// Maps the dtype spellings of a `.pt` (`torch.float16`, `HalfStorage`, `float16`) to a kind.
pub fn kind_of(dtype: &str) -> Option<Kind> {
    let d = dtype.trim_start_matches("torch.").to_ascii_lowercase();
    let d = d.trim_end_matches("storage");
    Some(match d {
        "float32" | "float" => Kind::Float,
        "float16" | "half" => Kind::Half,
        "bfloat16" => Kind::BFloat16,
        "float64" | "double" => Kind::Double,
        "int64" | "long" => Kind::Int64,
        "int32" | "int" => Kind::Int,
        "int16" | "short" => Kind::Int16,
        "int8" | "char" => Kind::Int8,
        "uint8" | "byte" => Kind::Uint8,
        "bool" => Kind::Bool,
        _ => return None,
    })
}

/// Number of storage elements a view needs: offset + the farthest element + 1.
pub fn storage_extent(shape: &[i64], strides: &[i64], offset: i64) -> Option<i64> {
    if shape.len() != strides.len() || offset < 0 {
        return None;
    }
    if shape.contains(&0) {
        return Some(offset);
    }
    let mut last = offset;
    for (&d, &s) in shape.iter().zip(strides) {
        if d < 0 || s < 0 {
            return None;
        }
        last = last.checked_add((d - 1).checked_mul(s)?)?;
    }
    last.checked_add(1)
}

/// Reads the bytes of record `name` (`archive/data/0`) at the span the validator found.
fn read_record(
    file: &mut File,
    file_len: u64,
    spans: &[RecordSpan],
    name: &str,
    max_record_bytes: u64,
) -> Result<Vec<u8>, String> {
    let span = spans
        .iter()
        .find(|s| s.name == name)
        .ok_or_else(|| format!("{name}: no such record in the model file"))?;
    if span.method != 0 || span.stored_bytes != span.size {
        // torch.save stores tensor data uncompressed (so it can be memory-mapped).
        return Err(format!(
            "{name}: compressed (zip method {}); torch.save stores tensor data uncompressed",
            span.method
        ));
    }
    if span.size > max_record_bytes {
        return Err(format!("{name}: {} bytes is over the limit", span.size));
    }
    if span
        .data_offset
        .checked_add(span.size)
        .is_none_or(|end| end > file_len)
    {
        return Err(format!("{name}: its bytes run past the end of the file"));
    }
    let mut bytes = vec![0u8; usize::try_from(span.size).map_err(|_| "record too large")?];
    file.seek(SeekFrom::Start(span.data_offset))
        .and_then(|_| file.read_exact(&mut bytes))
        .map_err(|e| format!("{name}: {e}"))?;
    Ok(bytes)
}

/// Reads every tensor's bytes from the `.pt` at the record spans the validator found, under
/// the zip's top folder `prefix` (PyTorch takes it from the first record, as the inspection
/// did). `max_record_bytes` bounds each storage.
pub fn read_tensors(
    pt: &Path,
    prefix: &str,
    spans: &[RecordSpan],
    tensors: &[StoredTensor],
    max_record_bytes: u64,
) -> Result<BTreeMap<String, Tensor>, String> {
    let mut file = File::open(pt).map_err(|e| format!("{}: {e}", pt.display()))?;
    let file_len = file
        .metadata()
        .map_err(|e| format!("{}: {e}", pt.display()))?
        .len();
    let mut storages: BTreeMap<(String, String), Tensor> = BTreeMap::new();
    let mut out = BTreeMap::new();
    for t in tensors {
        let kind = kind_of(&t.dtype)
            .ok_or_else(|| format!("{}: unsupported dtype {}", t.name, t.dtype))?;
        let key = (t.storage_key.clone(), format!("{kind:?}"));
        if !storages.contains_key(&key) {
            let record = format!("{prefix}/data/{}", t.storage_key);
            let bytes = read_record(&mut file, file_len, spans, &record, max_record_bytes)?;
            let elt = kind.elt_size_in_bytes();
            if bytes.len() % elt != 0 {
                return Err(format!(
                    "{record}: {} bytes is not a whole number of {} values",
                    bytes.len(),
                    t.dtype
                ));
            }
            let n = i64::try_from(bytes.len() / elt).map_err(|_| "record too large")?;
            let storage =
                Tensor::f_from_data_size(&bytes, &[n], kind).map_err(|e| e.to_string())?;
            storages.insert(key.clone(), storage);
        }
        let storage = storages.get(&key).ok_or("storage vanished")?;
        let extent = storage_extent(&t.shape, &t.strides, t.storage_offset)
            .ok_or_else(|| format!("{}: invalid shape/strides/offset", t.name))?;
        let available = storage.size().first().copied().unwrap_or(0);
        if extent > available {
            return Err(format!(
                "{}: needs {extent} elements of storage {} but it holds {available}",
                t.name, t.storage_key
            ));
        }
        let view = storage
            .f_as_strided(t.shape.as_slice(), t.strides.as_slice(), t.storage_offset)
            .map_err(|e| e.to_string())?
            .contiguous();
        out.insert(t.name.clone(), view);
    }
    Ok(out)
}

/// Confirms that `name` (the validator's recognition, from the report) built here with
/// `classes` outputs has exactly the state dict's parameters: every name, every shape, nothing
/// missing or extra (batch-norm step counters aside). Returns the builder's own name.
pub fn confirm(
    name: &str,
    classes: i64,
    shapes: &BTreeMap<String, Vec<i64>>,
) -> Result<&'static str, String> {
    let arch = arch::BUILDABLE
        .iter()
        .copied()
        .find(|b| *b == name)
        .ok_or_else(|| format!("{name} is not built by the compile server"))?;
    let wanted: BTreeMap<&str, &Vec<i64>> = shapes
        .iter()
        .filter(|(k, _)| !arch::ignorable_key(k))
        .map(|(k, v)| (k.as_str(), v))
        .collect();
    let vs = nn::VarStore::new(Device::Cpu);
    if classes <= 0 || arch::build(arch, &vs.root(), classes).is_none() {
        return Err(format!("{arch} cannot be built with {classes} classes"));
    }
    let vars = vs.variables();
    if let Some((k, v)) = vars
        .iter()
        .find(|(k, v)| wanted.get(k.as_str()).is_none_or(|s| **s != v.size()))
    {
        return Err(match wanted.get(k.as_str()) {
            None => format!("it has no {k}, which {arch} needs"),
            Some(s) => format!("{k} has shape {s:?}, {arch} needs {:?}", v.size()),
        });
    }
    if let Some(extra) = wanted.keys().find(|k| !vars.contains_key(**k)) {
        return Err(format!("it has {extra}, which {arch} does not"));
    }
    Ok(arch)
}

/// A state dict rebuilt as TorchScript.
pub struct Rebuilt {
    pub architecture: &'static str,
    pub kind: Kind,
}

/// Builds `architecture`, loads `tensors` into it, traces it on `input_shape` (in `as_kind`, or
/// the weights' floating dtype) and saves the TorchScript module to `out`.
///
/// Tracing turns the weights into graph constants, and constants do not follow `.half()` or
/// `.to()`: an fp16 artifact must therefore be traced in fp16 (`as_kind`), not converted.
/// (`torch.jit.load(..., map_location=...)` does move constants, so the device is not baked in.)
pub fn rebuild(
    architecture: &'static str,
    num_classes: i64,
    tensors: &BTreeMap<String, Tensor>,
    input_shape: &[i64],
    out: &Path,
    as_kind: Option<Kind>,
) -> Result<Rebuilt, String> {
    let mut vs = nn::VarStore::new(Device::Cpu);
    let model = arch::build(architecture, &vs.root(), num_classes)
        .ok_or_else(|| format!("unknown architecture {architecture}"))?;
    let mut kind = Kind::Float;
    tch::no_grad(|| -> Result<(), String> {
        for (name, var) in vs.variables() {
            let src = tensors
                .get(&name)
                .ok_or_else(|| format!("the state dict has no {name}"))?;
            if src.size() != var.size() {
                return Err(format!(
                    "{name}: shape {:?}, the architecture wants {:?}",
                    src.size(),
                    var.size()
                ));
            }
            if src.is_floating_point() {
                kind = src.kind();
            }
            let mut var = var;
            var.f_copy_(src).map_err(|e| e.to_string())?;
        }
        Ok(())
    })?;
    if let Some(k) = as_kind {
        kind = k;
    }
    if kind != Kind::Float {
        vs.set_kind(kind);
    }
    vs.freeze();
    let input =
        crate::forward::fixed_input(input_shape, kind, Device::Cpu).map_err(|e| e.to_string())?;
    // tch's modules call libtorch through panicking wrappers: an input size a builder cannot
    // take (too small for its pooling) must fail the job, not the worker.
    let traced = std::panic::catch_unwind(AssertUnwindSafe(|| {
        tch::no_grad(|| {
            CModule::create_by_tracing("byom", "forward", &[input], &mut |xs| {
                vec![model.forward_t(&xs[0], false)]
            })
        })
    }));
    let module = match traced {
        Ok(m) => m.map_err(|e| format!("tracing {architecture} failed: {e}"))?,
        Err(payload) => {
            return Err(format!(
                "{architecture} as built here cannot run on input {input_shape:?}: {}",
                panic_text(payload.as_ref())
            ))
        }
    };
    module
        .save(out)
        .map_err(|e| format!("saving the traced module failed: {e}"))?;
    Ok(Rebuilt { architecture, kind })
}

/// First line of a panic's message (libtorch errors carry a long C++ backtrace after it).
fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    let text = payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
        .unwrap_or("libtorch error");
    let text = text
        .split("\\nException raised from")
        .next()
        .unwrap_or(text);
    text.lines()
        .next()
        .unwrap_or(text)
        .chars()
        .take(500)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panic_text_keeps_the_first_line_only() {
        let p: Box<dyn std::any::Any + Send> =
            Box::new("x: Torch(\"bad size\\nException raised from f\")\nmore".to_string());
        assert_eq!(panic_text(p.as_ref()), "x: Torch(\"bad size");
    }

    #[test]
    fn dtype_spellings() {
        assert_eq!(kind_of("torch.float16"), Some(Kind::Half));
        assert_eq!(kind_of("FloatStorage"), Some(Kind::Float));
        assert_eq!(kind_of("float32"), Some(Kind::Float));
        assert_eq!(kind_of("BFloat16Storage"), Some(Kind::BFloat16));
        assert_eq!(kind_of("complex32"), None);
    }

    #[test]
    fn extents() {
        assert_eq!(storage_extent(&[2, 3], &[3, 1], 0), Some(6));
        assert_eq!(storage_extent(&[2, 3], &[1, 2], 4), Some(10));
        assert_eq!(storage_extent(&[], &[], 7), Some(8));
        assert_eq!(storage_extent(&[0, 3], &[3, 1], 5), Some(5));
        assert_eq!(storage_extent(&[2], &[1, 1], 0), None);
        assert_eq!(storage_extent(&[2], &[-1], 0), None);
        assert_eq!(storage_extent(&[i64::MAX, 2], &[i64::MAX, 1], 0), None);
    }
}
