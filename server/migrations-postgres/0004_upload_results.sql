-- byom-server schema v4: the verdicts of completed resumable (tus) uploads.
--
-- A tus client learns that an upload is complete from its last PATCH (204) or, when that
-- answer was lost, from HEAD (Upload-Offset = Upload-Length). Either way the validation
-- verdict must still reach it: `GET /api/v1/uploads/{id}` reads it here. One row per
-- completed upload, of its tenant; the expiry sweeper removes rows older than the upload
-- expiry (finished_at in Unix seconds), so the table stays bounded.

CREATE TABLE upload_results (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL,
    name        TEXT NOT NULL,
    length      BIGINT NOT NULL,
    -- The package the upload became; NULL when it was refused.
    package_id  TEXT,
    -- When refused: the HTTP status and the documented error body (with `report` for 422).
    status      BIGINT NOT NULL,
    error_json  TEXT,
    finished_at BIGINT NOT NULL
);
CREATE INDEX upload_results_by_age ON upload_results (finished_at);
