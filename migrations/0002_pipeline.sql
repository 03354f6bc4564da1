-- What the streaming pipeline needs beyond 0001 to keep every write idempotent under replays.

-- One row per (run, validator) whose scoring failed: fail_count is counted from rows, never incremented.
CREATE TABLE scoring_failures (
    scoring_run_id  uuid        NOT NULL REFERENCES scoring_runs (id) ON DELETE CASCADE,
    vote_account    text        NOT NULL,
    error           text        NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scoring_run_id, vote_account)
);

-- The cluster-wide references a run was scored against (explainability, and agents that missed the header).
ALTER TABLE scoring_runs ADD COLUMN cluster_context jsonb;

-- A replayed older run must not overwrite what a newer run wrote about a validator.
ALTER TABLE validators ADD COLUMN last_observed_at timestamptz;

-- The run that last counted as an observation of this epoch: a replay of the same run is not counted twice.
ALTER TABLE validator_epoch_history ADD COLUMN last_run_id uuid;
