//! Streaming gzip + tar walk with the hostile-entry policy and limits.
//!
//! Bytes are pushed in ([`gzip::GzipDecoder`]), inflated into a fixed 64 KiB buffer, and walked
//! as tar ([`tar::TarWalker`]) without ever holding a member in memory; the walker hands
//! accepted regular files to a [`tar::TarSink`] piece by piece. Every limit comes from
//! [`crate::Limits`].

pub mod chunk_plan;
pub mod chunked;
pub mod deflate;
pub mod gzip;
pub mod path;
pub mod tar;
pub mod ustar;

pub use gzip::GzipDecoder;
pub use tar::{TarSink, TarWalker};
