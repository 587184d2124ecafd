//! Views of packages.

use serde::Serialize;
use sqlx::Row;

use super::jobs::JobView;

/// A package is only ever shown once stored (a refused upload leaves none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PackageState {
    Stored,
}

/// The Package object of the API.
#[derive(Debug, Serialize)]
pub struct PackageView {
    pub id: String,
    pub name: String,
    pub sha256: String,
    pub size: u64,
    pub created_at: String,
    pub status: PackageState,
    /// The validation report as stored when the package was uploaded, passed through as it
    /// was written (a report of an older server stays readable); null if it is not JSON.
    pub report: serde_json::Value,
}

impl PackageView {
    /// From a `packages` row (`id, name, sha256, size, created_at, report_json`).
    pub fn of_row(row: &sqlx::any::AnyRow) -> PackageView {
        PackageView {
            id: row.get("id"),
            name: row.get("name"),
            sha256: row.get("sha256"),
            size: u64::try_from(row.get::<i64, _>("size")).unwrap_or(0),
            created_at: row.get("created_at"),
            status: PackageState::Stored,
            report: serde_json::from_str(row.get::<&str, _>("report_json"))
                .unwrap_or(serde_json::Value::Null),
        }
    }
}

/// `GET /api/v1/packages/{id}`: the package and its jobs, newest first.
#[derive(Debug, Serialize)]
pub struct PackageDetail {
    #[serde(flatten)]
    pub package: PackageView,
    pub jobs: Vec<JobView>,
}

/// `{"package": Package}`.
#[derive(Debug, Serialize)]
pub struct PackageResponse {
    pub package: PackageView,
}

/// `{"packages": [Package]}`.
#[derive(Debug, Serialize)]
pub struct PackageList {
    pub packages: Vec<PackageView>,
}
