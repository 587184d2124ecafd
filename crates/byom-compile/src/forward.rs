//! The fixed input every forward pass uses, and picking the output that is checked.

use tch::{CModule, Device, IValue, Kind, TchError, Tensor};

/// `linspace(-1, 1, numel).reshape(shape)`: deterministic, covers negative and positive values,
/// and is generated the same way by the C++ shim and by `load.py`, so outputs compare exactly.
pub fn fixed_input(shape: &[i64], kind: Kind, device: Device) -> Result<Tensor, TchError> {
    let numel: i64 = shape.iter().product();
    Tensor::f_linspace(-1.0, 1.0, numel, (Kind::Float, Device::Cpu))?
        .f_reshape(shape)?
        .f_to_kind(kind)?
        .f_to_device(device)
}

/// The output that was checked, and how to find it again.
#[derive(Debug)]
pub struct Selected {
    pub tensor: Tensor,
    /// Selector for the shim: "" tensor, "#i" tuple/list element, else a dict key.
    pub selector: String,
    /// For the report: "the output tensor", "element 0 of a tuple of 2", ...
    pub description: String,
}

fn as_tensor(v: &IValue) -> Option<&Tensor> {
    match v {
        IValue::Tensor(t) => Some(t),
        _ => None,
    }
}

/// Picks the output to check: the tensor itself, else the first element of a tuple/list or
/// the first value of a dict whose shape is the declared one, else the first tensor in it.
pub fn select(output: IValue, declared: Option<&[i64]>) -> Result<Selected, String> {
    let matches = |t: &Tensor| declared.is_some_and(|d| t.size() == d);
    let pick = |items: Vec<(String, String, Tensor)>, what: &str| -> Result<Selected, String> {
        let n = items.len();
        let chosen = items
            .iter()
            .position(|(_, _, t)| matches(t))
            .or(if items.is_empty() { None } else { Some(0) })
            .ok_or_else(|| format!("the model returned a {what} with no tensor in it"))?;
        let (selector, label, tensor) = items.into_iter().nth(chosen).ok_or("no output")?;
        Ok(Selected {
            tensor,
            selector,
            description: format!("{label} of a {what} of {n}"),
        })
    };
    match output {
        IValue::Tensor(tensor) => Ok(Selected {
            tensor,
            selector: String::new(),
            description: "the output tensor".into(),
        }),
        IValue::Tuple(items) | IValue::GenericList(items) => {
            let tensors = items
                .iter()
                .enumerate()
                .filter_map(|(i, v)| {
                    as_tensor(v)
                        .map(|t| (format!("#{i}"), format!("element {i}"), t.shallow_clone()))
                })
                .collect();
            pick(tensors, "tuple/list")
        }
        IValue::TensorList(items) => pick(
            items
                .into_iter()
                .enumerate()
                .map(|(i, t)| (format!("#{i}"), format!("element {i}"), t))
                .collect(),
            "tensor list",
        ),
        IValue::GenericDict(items) => {
            let tensors = items
                .iter()
                .filter_map(|(k, v)| match (k, as_tensor(v)) {
                    (IValue::String(k), Some(t)) if !k.starts_with('#') => {
                        Some((k.clone(), format!("value {k:?}"), t.shallow_clone()))
                    }
                    _ => None,
                })
                .collect();
            pick(tensors, "dict")
        }
        _ => {
            Err("the model's output is not a tensor, a tuple/list or a dict of tensors".to_string())
        }
    }
}

/// Runs `module` on the fixed input and returns the selected output.
pub fn run(module: &CModule, input: &Tensor, declared: Option<&[i64]>) -> Result<Selected, String> {
    let out = tch::no_grad(|| module.forward_is(&[IValue::Tensor(input.shallow_clone())]))
        .map_err(|e| e.to_string())?;
    select(out, declared)
}

/// Floating dtype of a TorchScript module's parameters (Float when it has none).
pub fn parameter_kind(module: &CModule) -> Kind {
    module
        .named_parameters()
        .ok()
        .and_then(|ps| ps.into_iter().map(|(_, t)| t.kind()).find(|k| is_float(*k)))
        .unwrap_or(Kind::Float)
}

/// Floating-point kinds (the ones a model's input takes).
pub fn is_float(k: Kind) -> bool {
    matches!(k, Kind::Float | Kind::Half | Kind::BFloat16 | Kind::Double)
}

/// Errors between an artifact's output and the original's: (max abs, max abs / max |original|).
pub fn compare(original: &[f32], other: &[f32]) -> Option<(f64, f64)> {
    if original.len() != other.len() {
        return None;
    }
    let mut max_abs = 0f64;
    let mut scale = 0f64;
    for (&a, &b) in original.iter().zip(other) {
        let (a, b) = (f64::from(a), f64::from(b));
        if !a.is_finite() || !b.is_finite() {
            if a.to_bits() != b.to_bits() {
                return Some((f64::INFINITY, f64::INFINITY));
            }
            continue;
        }
        max_abs = max_abs.max((a - b).abs());
        scale = scale.max(a.abs());
    }
    let rel = if scale > 0.0 {
        max_abs / scale
    } else {
        max_abs
    };
    Some((max_abs, rel))
}

/// The tensor as f32 values, for comparison.
pub fn to_f32_vec(t: &Tensor) -> Result<Vec<f32>, TchError> {
    let flat = t
        .f_to_kind(Kind::Float)?
        .f_to_device(Device::Cpu)?
        .f_flatten(0, -1)?;
    Vec::<f32>::try_from(&flat)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_input_is_deterministic_linspace() {
        let t = fixed_input(&[1, 2, 2], Kind::Float, Device::Cpu).unwrap();
        let v = to_f32_vec(&t).unwrap();
        assert_eq!(v.len(), 4);
        assert!((v[0] + 1.0).abs() < 1e-7 && (v[3] - 1.0).abs() < 1e-7);
        assert_eq!(t.size(), vec![1, 2, 2]);
    }

    #[test]
    fn selects_declared_output_from_tuple() {
        let a = Tensor::zeros([1, 3], (Kind::Float, Device::Cpu));
        let b = Tensor::zeros([1, 84, 10], (Kind::Float, Device::Cpu));
        let out = IValue::Tuple(vec![IValue::Tensor(a), IValue::Tensor(b)]);
        let s = select(out, Some(&[1, 84, 10])).unwrap();
        assert_eq!(s.selector, "#1");
        assert_eq!(s.description, "element 1 of a tuple/list of 2");
        assert!(select(IValue::Int(3), None).is_err());
    }

    #[test]
    fn compare_reports_relative_error() {
        assert_eq!(compare(&[1.0, -2.0], &[1.0, -2.0]), Some((0.0, 0.0)));
        let (abs, rel) = compare(&[1.0, -4.0], &[1.0, -3.0]).unwrap();
        assert!((abs - 1.0).abs() < 1e-12 && (rel - 0.25).abs() < 1e-12);
        assert_eq!(compare(&[1.0], &[1.0, 2.0]), None);
        assert_eq!(
            compare(&[f32::NAN], &[1.0]).map(|c| c.0),
            Some(f64::INFINITY)
        );
    }
}
