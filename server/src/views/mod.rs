//! The API's response bodies, one `#[derive(Serialize)]` type per object the OpenAPI document
//! names, one module per area. Field order is the order the API has always sent.

pub mod admin;
pub mod jobs;
pub mod meta;
pub mod packages;
pub mod uploads;
