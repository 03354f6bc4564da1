-- Initial schema: the seeds' tables made real, plus the history honest scoring needs.
-- Keys are chosen so every sink write is idempotent (a replayed record rewrites the same row).

CREATE TABLE validators (
    id                    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    vote_account          text        NOT NULL UNIQUE,
    validator_pubkey      text        NOT NULL,             -- node identity
    name                  text,
    website               text,
    details               text,
    icon_url              text,
    keybase_username      text,
    commission            smallint CHECK (commission BETWEEN 0 AND 100),
    activated_stake       bigint      NOT NULL DEFAULT 0 CHECK (activated_stake >= 0),   -- lamports
    uptime                double precision NOT NULL DEFAULT 0 CHECK (uptime BETWEEN 0 AND 100), -- percent
    delinquent            boolean     NOT NULL DEFAULT false,
    version               text,
    gossip_ip             text,
    authorized_withdrawer text,
    first_seen_epoch      integer,
    last_seen_epoch       integer,
    latest_score          double precision CHECK (latest_score BETWEEN 0 AND 100),
    latest_scoring_run_id uuid,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX validators_validator_pubkey_idx ON validators (validator_pubkey);
CREATE INDEX validators_latest_score_idx ON validators (latest_score DESC NULLS LAST, id);
CREATE INDEX validators_commission_idx ON validators (commission, id);
CREATE INDEX validators_stake_idx ON validators (activated_stake DESC, id);

CREATE TABLE scoring_runs (
    id               uuid        PRIMARY KEY,
    run_date         timestamptz NOT NULL DEFAULT now(),
    status           text        NOT NULL DEFAULT 'running'
                     CHECK (status IN ('running', 'completed', 'partial', 'failed')),
    validator_count  integer     NOT NULL DEFAULT 0 CHECK (validator_count >= 0),  -- expected records
    success_count    integer     NOT NULL DEFAULT 0 CHECK (success_count >= 0),
    fail_count       integer     NOT NULL DEFAULT 0 CHECK (fail_count >= 0),
    epoch            integer,
    slot             bigint,
    trigger          text        NOT NULL DEFAULT 'timer',   -- timer | cli | admin
    source           text,                                   -- rpc URL or "simulator"
    scoring_version  text,
    error            text,
    fetched_at       timestamptz,
    completed_at     timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX scoring_runs_run_date_idx ON scoring_runs (run_date DESC);
CREATE INDEX scoring_runs_status_idx ON scoring_runs (status) WHERE status = 'running';

CREATE TABLE trust_scores (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    validator_id     bigint      NOT NULL REFERENCES validators (id) ON DELETE CASCADE,
    scoring_run_id   uuid        NOT NULL REFERENCES scoring_runs (id) ON DELETE CASCADE,
    score            double precision NOT NULL CHECK (score BETWEEN 0 AND 100),
    confidence       double precision CHECK (confidence BETWEEN 0 AND 1),
    components       jsonb       NOT NULL DEFAULT '[]'::jsonb,   -- per-component breakdown
    penalties        jsonb       NOT NULL DEFAULT '[]'::jsonb,
    scoring_version  text        NOT NULL,
    epoch            integer,
    created_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT trust_scores_run_validator_key UNIQUE (scoring_run_id, validator_id)
);
CREATE INDEX trust_scores_validator_created_idx ON trust_scores (validator_id, created_at DESC);

-- One row per validator per epoch: what the scorer saw, kept so scores stay explainable later.
CREATE TABLE validator_epoch_history (
    validator_id        bigint   NOT NULL REFERENCES validators (id) ON DELETE CASCADE,
    epoch               integer  NOT NULL,
    credits             bigint,
    commission_first    smallint,
    commission_last     smallint,
    commission_min      smallint,
    commission_max      smallint,
    commission_applied  smallint,          -- from getInflationReward, when known
    activated_stake     bigint,
    leader_slots        integer,
    blocks_produced     integer,
    observations        integer  NOT NULL DEFAULT 0,
    delinquent_observations integer NOT NULL DEFAULT 0,
    updated_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (validator_id, epoch)
);

CREATE TABLE commission_events (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    validator_id       bigint   NOT NULL REFERENCES validators (id) ON DELETE CASCADE,
    epoch              integer  NOT NULL,
    kind               text     NOT NULL CHECK (kind IN ('rug', 'hike', 'decrease', 'change')),
    old_commission     smallint,
    new_commission     smallint,
    applied_commission smallint,
    scoring_run_id     uuid REFERENCES scoring_runs (id) ON DELETE SET NULL,
    details            jsonb    NOT NULL DEFAULT '{}'::jsonb,
    detected_at        timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT commission_events_once UNIQUE (validator_id, epoch, kind)
);
CREATE INDEX commission_events_detected_idx ON commission_events (detected_at DESC);
CREATE INDEX commission_events_rugs_idx ON commission_events (validator_id, epoch DESC) WHERE kind = 'rug';

CREATE TABLE audit_log (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    action      text        NOT NULL,
    actor_id    text,
    metadata    jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_log_created_idx ON audit_log (created_at DESC);
CREATE INDEX audit_log_action_idx ON audit_log (action, created_at DESC);

CREATE TABLE users (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    wallet_pubkey  text        NOT NULL UNIQUE,
    email          text,
    role           text        NOT NULL DEFAULT 'user' CHECK (role IN ('viewer', 'user', 'admin')),
    last_login_at  timestamptz,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE stake_accounts (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    stake_pubkey        text        NOT NULL UNIQUE,
    user_id             bigint REFERENCES users (id) ON DELETE SET NULL,
    staker              text,
    withdrawer          text,
    vote_account        text,                     -- delegation target, even if not (yet) a known validator
    validator_id        bigint REFERENCES validators (id) ON DELETE SET NULL,
    staked_amount       bigint      NOT NULL DEFAULT 0 CHECK (staked_amount >= 0),   -- lamports
    state               text,                     -- activating | active | deactivating | inactive
    activation_epoch    bigint,
    deactivation_epoch  bigint,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX stake_accounts_user_idx ON stake_accounts (user_id);
CREATE INDEX stake_accounts_validator_idx ON stake_accounts (validator_id);
