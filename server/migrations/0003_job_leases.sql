-- byom-server schema v3: job leases, so that many workers (on many hosts) can share one queue.
--
-- A worker that claims a job holds a lease on it (lease_owner, until lease_until in Unix
-- seconds) and renews it with heartbeats; a job whose lease ran out (its worker died) is
-- re-queued or failed by the reaper. attempts counts claims, so a job that kills its worker
-- is not retried for ever. cancel_requested reaches a job running on another host: its worker
-- sees it with the next heartbeat and kills the compile.

ALTER TABLE jobs ADD COLUMN lease_owner TEXT;
ALTER TABLE jobs ADD COLUMN lease_until INTEGER;
ALTER TABLE jobs ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0;
CREATE INDEX jobs_by_lease ON jobs (status, lease_until);
