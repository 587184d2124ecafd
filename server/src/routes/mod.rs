//! HTTP handlers, one module per resource.

pub mod admin;
pub mod jobs;
pub mod meta;
pub mod packages;
pub mod tus;
pub mod uploads;
