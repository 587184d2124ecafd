//! Turning what the readers kept into a verdict: kind, inventory, safety, version, issues.
//!
//! One analysis per reader — `zip` (the `.pt` zip, in named steps), `legacy` (pre-1.6
//! pickles), `other` (anything else) — over what they share in `common` (the context, one
//! collection of globals, the safety judgement, version policy, the verdict line). This file
//! only declares and re-exports, so dependencies point one way (common ← zip/legacy/other).

mod common;
mod legacy;
mod other;
mod zip;

pub use common::{walk_limits, Ctx};
pub use legacy::legacy_file;
pub use other::other_file;
pub use zip::zip_file;
