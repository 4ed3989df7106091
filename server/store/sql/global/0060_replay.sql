-- Replay runs (issue 7, scripts/commands/replay.py, workers/replay.py): one row per
-- `shutterlog replay` or `--verify` run, kept in the shard map's first database (like every
-- global migration the tables exist everywhere and stay empty elsewhere), with the run's own
-- checkpoint per (projection, logical shard), so an interrupted run can resume where it
-- stopped. The live consumers' checkpoints stay in `checkpoints`: a run never touches them
-- until its swap.
CREATE TABLE replay_runs (
    id          bigserial   PRIMARY KEY,
    kind        text        NOT NULL CHECK (kind IN ('replay', 'verify')),
    projection  text        NOT NULL,           -- one projection per run (`all` makes several)
    shards      integer[],                       -- NULL: every shard
    until_id    bigint,                          -- --until: stop before events above this id
    status      text        NOT NULL DEFAULT 'building'
                            CHECK (status IN ('building', 'swapped', 'verified', 'different',
                                              'abandoned')),
    events      bigint      NOT NULL DEFAULT 0,  -- events applied so far (resumed runs too)
    started_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX replay_runs_open ON replay_runs (projection, kind) WHERE status = 'building';

CREATE TABLE replay_checkpoints (
    run      bigint  NOT NULL REFERENCES replay_runs (id) ON DELETE CASCADE,
    shard    integer NOT NULL,
    txid     xid8    NOT NULL,
    event_id bigint  NOT NULL,
    PRIMARY KEY (run, shard)
);
