//! Rules about the `.pt` file (`BYOM6xx`, `BYOM7xx`).

use crate::report::Severity;
use crate::rules::Rule;

pub const NOT_PYTORCH: Rule = Rule {
    code: "BYOM600",
    name: "not-a-pytorch-file",
    severity: Severity::Error,
    summary: "The `.pt` file is not a PyTorch file at all.",
    hint: "Save the model with torch.jit.trace(model, example).save(\"model.pt\") or torch.save(model.state_dict(), \"model.pt\").",
    doc: "Neither a zip archive (`PK\\x03\\x04`) nor a legacy PyTorch pickle.",
};

pub const ALL: &[&Rule] = &[&NOT_PYTORCH];
