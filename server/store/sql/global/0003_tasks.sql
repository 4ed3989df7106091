-- Durable chunk tasks: work too big for one job, split into rows that each get a Gearman job
-- and are re-submitted when not done by due_at (workers/tasks.py).

CREATE TABLE tasks (
    id         bigint      PRIMARY KEY,       -- from a shard's next_id(): routable by id
    kind       text        NOT NULL,
    payload    bytea       NOT NULL,          -- msgpack
    state      text        NOT NULL DEFAULT 'pending'
                           CHECK (state IN ('pending', 'running', 'done', 'failed')),
    attempts   integer     NOT NULL DEFAULT 0,
    due_at     timestamptz NOT NULL,          -- pending: submit again after; running: lease end
    last_error text,
    created_at timestamptz NOT NULL DEFAULT now(),
    done_at    timestamptz
);

CREATE INDEX tasks_due ON tasks (due_at) WHERE state IN ('pending', 'running');
