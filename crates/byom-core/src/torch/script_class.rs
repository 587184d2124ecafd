//! A TorchScript file's architecture, named from its root class.
//!
//! Why it can be named: `torch.jit.save` pickles the root module as an instance of its class,
//! qualified as TorchScript knows it (`__torch__.timm.models.convnext.ConvNeXt`,
//! `__torch__.ultralytics.nn.tasks.DetectionModel`, `__torch__.MyNet` for a class of the
//! exporting script, whose `__main__` TorchScript drops). The first global of `data.pkl` is
//! that class; nothing is loaded or run to read it.
//!
//! How it is shown: `<library> <Class>` (`timm ConvNeXt`, `torchvision ResNet`,
//! `ultralytics DetectionModel`), the class alone for the exporting script's own class
//! (`MyNet`). TorchScript's `___torch_mangle_N` segments (added when one process compiles two
//! different classes of one name) are not part of the name and are dropped.

use serde::{Deserialize, Serialize};

/// Longest qualified name accepted (a crafted pickle could name anything).
const MAX_QUALIFIED: usize = 512;

/// The class of a TorchScript file's root module.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScriptClass {
    /// As the file names it, mangling kept: `__torch__.timm.models.convnext.ConvNeXt`.
    pub qualified: String,
    /// The Python module that defined it, without `__torch__.` and mangling:
    /// `timm.models.convnext`; empty for a class of the exporting script (`__main__`).
    pub module: String,
    /// `ConvNeXt`.
    pub class: String,
    /// The top package of `module` (`timm`, `torchvision`, `ultralytics`); `None` for the
    /// exporting script's own class.
    pub library: Option<String>,
}

/// A TorchScript mangling segment, `___torch_mangle_12`.
pub(crate) fn is_mangle(segment: &str) -> bool {
    segment
        .strip_prefix("___torch_mangle_")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && !s.as_bytes()[0].is_ascii_digit()
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// `torch.nn.modules.conv.Conv2d` for `__torch__.torch.nn.modules.conv.___torch_mangle_3.Conv2d`:
/// the Python name of a TorchScript qualified name; `None` when it is not one.
pub(crate) fn python_name(qualified: &str) -> Option<String> {
    let rest = qualified.strip_prefix("__torch__.")?;
    let parts: Vec<&str> = rest.split('.').filter(|s| !is_mangle(s)).collect();
    if parts.is_empty() || !parts.iter().all(|p| is_identifier(p)) {
        return None;
    }
    Some(parts.join("."))
}

impl ScriptClass {
    /// From the root global `(module, name)` of a TorchScript `data.pkl`; `None` when it is not
    /// a well-formed TorchScript class name.
    pub fn from_global(module: &str, name: &str) -> Option<Self> {
        let qualified = format!("{module}.{name}");
        if qualified.len() > MAX_QUALIFIED || !is_identifier(name) || is_mangle(name) {
            return None;
        }
        if module != "__torch__" && !module.starts_with("__torch__.") {
            return None;
        }
        let python = python_name(&qualified)?;
        let module = python
            .rsplit_once('.')
            .map(|(m, _)| m.to_string())
            .unwrap_or_default();
        let library = module.split('.').next().filter(|s| !s.is_empty());
        Some(ScriptClass {
            library: library.map(str::to_string),
            module,
            class: name.to_string(),
            qualified,
        })
    }

    /// How the product names it: `timm ConvNeXt`, `MyNet`.
    pub fn display(&self) -> String {
        match &self.library {
            Some(l) => format!("{l} {}", self.class),
            None => self.class.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn library_and_class_from_the_root_global() {
        let c = ScriptClass::from_global("__torch__.timm.models.convnext", "ConvNeXt").unwrap();
        assert_eq!(c.library.as_deref(), Some("timm"));
        assert_eq!(c.module, "timm.models.convnext");
        assert_eq!(c.display(), "timm ConvNeXt");
        let c = ScriptClass::from_global(
            "__torch__.torchvision.models.resnet.___torch_mangle_12",
            "ResNet",
        )
        .unwrap();
        assert_eq!(c.display(), "torchvision ResNet");
        assert_eq!(
            c.qualified,
            "__torch__.torchvision.models.resnet.___torch_mangle_12.ResNet"
        );
        // The exporting script's own class: TorchScript writes __main__ as __torch__.
        for m in ["__torch__", "__torch__.___torch_mangle_973"] {
            let c = ScriptClass::from_global(m, "MyNet").unwrap();
            assert_eq!(
                (c.library.as_deref(), c.module.as_str(), c.display()),
                (None, "", "MyNet".into())
            );
        }
    }

    #[test]
    fn what_is_not_a_torchscript_class_name_is_not_named() {
        for (m, n) in [
            ("collections", "OrderedDict"),
            ("__torch__x", "Net"),
            ("__torch__.a b", "Net"),
            ("__torch__.a", "Net\n"),
            ("__torch__.a..b", "Net"),
            ("__torch__", "___torch_mangle_1"),
        ] {
            assert!(ScriptClass::from_global(m, n).is_none(), "{m} {n:?}");
        }
        let long = format!("__torch__.{}", "a.".repeat(300));
        assert!(ScriptClass::from_global(long.trim_end_matches('.'), "N").is_none());
    }
}
