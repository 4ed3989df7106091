-- The event log of this physical database: append-only, read in (txid, id) order per shard.

CREATE TABLE events (
    id             bigint      PRIMARY KEY,
    shard          integer     NOT NULL,
    stream         text        NOT NULL,
    version        integer     NOT NULL CHECK (version > 0),
    type           text        NOT NULL,
    schema_version smallint    NOT NULL,
    actor          bigint,
    payload        bytea       NOT NULL,
    metadata       jsonb       NOT NULL DEFAULT '{}',
    created_at     timestamptz NOT NULL DEFAULT now(),
    txid           xid8        NOT NULL DEFAULT pg_current_xact_id(),
    CONSTRAINT events_stream_version UNIQUE (stream, version)
);

-- Serves "events of shard S after position P in safe order" (server/store/events.py).
CREATE INDEX events_shard_position ON events (shard, txid, id);

CREATE FUNCTION events_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the event log is append-only: % on events is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER events_append_only
    BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_refuse_change();

CREATE TRIGGER events_no_truncate
    BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_refuse_change();

-- Wake the relay: one notification per shard per statement, delivered at commit.
CREATE FUNCTION events_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('shutterlog_events', s::text) FROM (SELECT DISTINCT shard AS s FROM appended) x;
    RETURN NULL;
END
$$;

CREATE TRIGGER events_notify
    AFTER INSERT ON events
    REFERENCING NEW TABLE AS appended
    FOR EACH STATEMENT EXECUTE FUNCTION events_notify();

-- An inline projection of appends that carried an Idempotency-Key: a retry finds the first
-- result here and appends nothing.
CREATE TABLE idempotency_keys (
    shard      integer     NOT NULL,
    key        text        NOT NULL,
    stream     text        NOT NULL,
    event_ids  bigint[]    NOT NULL,
    version    integer     NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (shard, key)
);
