//! The service layer between the HTTP routes and storage: what the API does (uploads,
//! packages, jobs), with its tenant checks, quotas, audit records and metrics. Functions take
//! the shared [`crate::app::AppState`] and return domain types or an [`crate::error::ApiError`];
//! `routes` only extract requests and turn the results into `views`.

pub mod jobs;
pub mod packages;
pub mod uploads;
pub mod uploads_s3;
