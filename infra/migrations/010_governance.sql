-- Governance: policy dry-runs, and when each operator's token was last used.

-- One row per `casegate policy dry-run` (or the console's dry-run) of a candidate policy:
-- the report that was shown, keyed by a random id and found by the candidate's sha256.
-- `policy publish` refuses a candidate with no row here (unless overridden, which the
-- PolicyPublished event records), so a loosened policy is never published unseen.
CREATE TABLE policy_dry_runs (
    dry_run_id        text        PRIMARY KEY,
    candidate_sha256  text        NOT NULL CHECK (candidate_sha256 ~ '^[0-9a-f]{64}$'),
    candidate_version text        NOT NULL,
    document          text        NOT NULL,  -- the candidate as dry-run, for the console to publish
    baseline_version  text,
    window_start      timestamptz NOT NULL,
    window_end        timestamptz NOT NULL,
    ran_by            text        NOT NULL,
    ran_at            timestamptz NOT NULL DEFAULT now(),
    decisions         int         NOT NULL,
    changed           int         NOT NULL,
    report            jsonb       NOT NULL
);
CREATE INDEX policy_dry_runs_candidate ON policy_dry_runs (candidate_sha256, ran_at);

-- When the token was last used, to the minute: the console writes it at most once a
-- minute per operator and process, so authentication stays a read on almost every request.
ALTER TABLE operators ADD COLUMN last_used_at timestamptz;
