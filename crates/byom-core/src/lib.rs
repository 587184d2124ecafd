//! byom-core: the one validator behind the browser, the CLI and the server.
//!
//! It is pure on purpose: bytes go in (pushed in chunks of any size), a [`report::Report`]
//! comes out. No file system, no threads, no clock, so the very same code runs natively
//! and in `wasm32-unknown-unknown`, and every face reaches the same verdict for the same bytes.
//!
//! Data flows one way: bytes → [`archive`] (gzip + tar walk) → files → [`rules`] → [`report`].
//! The `.pt` model file is streamed through [`torch`] in the same pass.

pub mod archive;
pub mod diagnostics;
pub mod limits;
pub mod operators;
pub mod pack;
pub mod package;
pub mod report;
pub mod rules;
pub mod settings;
pub mod torch;
pub mod torch_version;
pub mod validate;

pub use diagnostics::{Category, Code, Rule};
pub use limits::Limits;
pub use package::ValidatedPackage;
pub use report::{Event, Issue, Report, Severity, Summary};
pub use settings::Settings;
pub use torch::version::TorchVersion;
pub use validate::{ExtractSink, NoExtract, Validator};

/// The crate version, carried in every report so a verdict can be traced to the code that made it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
