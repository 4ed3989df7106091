-- Consumers of the log: a checkpoint per (consumer, logical shard) of this database, and the
-- events parked after failing every retry. See workers/advance.py.

CREATE TABLE checkpoints (
    consumer   text        NOT NULL,
    shard      integer     NOT NULL,
    txid       xid8        NOT NULL,           -- position of the last event fully applied
    event_id   bigint      NOT NULL,
    status     text        NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'stopped')),
    reason     text,                           -- why it stopped
    failures   integer     NOT NULL DEFAULT 0, -- failed attempts on the batch after txid.event_id
    last_error text,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, shard)
);

-- Ids come from the event's shard's next_id(), so an id says which database holds the row.
CREATE TABLE dead_letters (
    id              bigint      PRIMARY KEY,
    consumer        text        NOT NULL,
    shard           integer     NOT NULL,
    event_id        bigint      NOT NULL,
    txid            xid8        NOT NULL,
    error           text        NOT NULL,
    traceback       text        NOT NULL,
    attempts        integer     NOT NULL,
    first_failed_at timestamptz NOT NULL,
    last_failed_at  timestamptz NOT NULL,
    status          text        NOT NULL CHECK (status IN ('parked', 'blocking')),
    UNIQUE (consumer, event_id)
);
