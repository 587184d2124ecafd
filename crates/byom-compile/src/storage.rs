//! Adapter from the core's tensor inventory (`byom_core::torch::TensorInfo`, read by its
//! non-executing pickle reader) to [`StoredTensor`]s located in the zip.

use byom_core::torch::PtInspection;

use crate::state_dict::StoredTensor;

fn to_i64(v: &[u64], what: &str) -> Result<Vec<i64>, String> {
    v.iter()
        .map(|&x| i64::try_from(x).map_err(|_| format!("{what}: value too large")))
        .collect()
}

/// Where each tensor of a state dict lives in the zip.
pub fn stored_tensors(inspection: &PtInspection) -> Result<Vec<StoredTensor>, String> {
    if inspection.tensors.is_empty() {
        return Err("the state dict has no tensors".to_string());
    }
    inspection
        .tensors
        .iter()
        .map(|t| {
            let storage_key = t
                .storage_key
                .clone()
                .ok_or_else(|| format!("{}: the inventory has no storage location", t.name))?;
            let shape = to_i64(&t.shape, &t.name)?;
            // A 0-d or contiguous tensor may come without strides: derive row-major ones.
            let strides = if t.strides.is_empty() && !shape.is_empty() {
                let mut s = vec![1i64; shape.len()];
                for i in (0..shape.len().saturating_sub(1)).rev() {
                    s[i] = s[i + 1]
                        .checked_mul(shape[i + 1].max(1))
                        .ok_or("stride overflow")?;
                }
                s
            } else {
                to_i64(&t.strides, &t.name)?
            };
            Ok(StoredTensor {
                name: t.name.clone(),
                dtype: t.dtype.clone(),
                shape,
                storage_key,
                storage_offset: i64::try_from(t.storage_offset).map_err(|_| "offset too large")?,
                strides,
            })
        })
        .collect()
}
