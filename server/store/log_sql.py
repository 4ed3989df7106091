"""The SQL of the event log: appends, page reads, single events.

Hot statements are run as server-side prepared statements with generic plans
(``Txn.execute_prepared``), so they use ``$n`` parameters. Shard-specific statements name the
shard's schema, which comes from an int (``schema_name``) and is safe to interpolate.

Beware: a bare ``ORDER BY txid`` beside ``txid::text`` in a select list sorts by the *text*
(PostgreSQL resolves ORDER BY names against output columns first), and "1000" < "999". The
text form is therefore always aliased, and sorts name ``events.txid``.
"""

from __future__ import annotations

from functools import cache

from server.domain.shards import schema_name

_RETURNING = (
    "id, stream, version, (extract(epoch FROM created_at) * 1000)::bigint, "
    "txid::text AS txid_text"
)
_COLUMNS = (
    "id, shard, stream, version, type, schema_version, actor, {payload}, {metadata}, "
    "(extract(epoch FROM created_at) * 1000)::bigint, txid::text AS txid_text"
)


@cache
def append_one(shard: int, keyed: bool) -> str:
    """One event to one stream: the common case, as a plain single-row INSERT.

    Parameters: $1 stream, $2 type, $3 schema version, $4 actor, $5 payload, $6 metadata
    (JSON text), $7 expected version (-1: any), and with ``keyed`` $8 the idempotency key.
    Returns no row when the stream is not at the expected version.
    """
    insert = f"""
        INSERT INTO events (id, shard, stream, version, type, schema_version, actor, payload,
                            metadata)
        SELECT {schema_name(shard)}.next_id(), {shard}, $1::text, cur.v + 1, $2::text,
               $3::smallint, $4::bigint, $5::bytea, $6::jsonb
        FROM (SELECT coalesce(max(version), 0) AS v FROM events WHERE stream = $1::text) AS cur
        WHERE $7::int = -1 OR cur.v = $7::int
        RETURNING id, stream, version, created_at, txid
    """
    if not keyed:
        return f"WITH ins AS ({insert}) SELECT {_RETURNING} FROM ins"
    return f"""
        WITH ins AS ({insert}), keys AS (
            INSERT INTO idempotency_keys (shard, key, stream, event_ids, version)
            SELECT {shard}, $8::text, stream, ARRAY[id], version FROM ins
        )
        SELECT {_RETURNING} FROM ins
    """


@cache
def append_many(shard: int) -> str:
    """Any number of events to any number of streams of one shard.

    Parameters: $1 the number of events, then one array per event: $2 stream, $3 position in
    its stream's append (1..), $4 the stream's expected version (-1: any), $5 type, $6 schema
    version, $7 actor, $8 payload, $9 metadata; then $10/$11 the streams and keys of keyed
    appends. A stream not at its expected version gets no rows.

    The unnest is the only function scan (so ``next_ids`` runs once), and each row finds its
    stream's version by an index lookup. Rows of one stream all see the same version: a
    statement does not see its own inserts.
    """
    return f"""
    WITH ins AS (
        INSERT INTO events (id, shard, stream, version, type, schema_version, actor, payload,
                            metadata)
        SELECT n.id, {shard}, n.stream, cur.v + n.ord, n.type, n.sv, n.actor, n.payload,
               n.meta::jsonb
        FROM unnest({schema_name(shard)}.next_ids($1::int), $2::text[], $3::int[], $4::int[],
                    $5::text[], $6::smallint[], $7::bigint[], $8::bytea[], $9::text[])
             AS n(id, stream, ord, expected, type, sv, actor, payload, meta)
        CROSS JOIN LATERAL (
            SELECT coalesce(max(e.version), 0) AS v FROM events e WHERE e.stream = n.stream
        ) AS cur
        WHERE n.expected = -1 OR n.expected = cur.v
        RETURNING id, stream, version, created_at, txid
    ), keys AS (
        INSERT INTO idempotency_keys (shard, key, stream, event_ids, version)
        SELECT {shard}, k.key, k.stream, array_agg(ins.id ORDER BY ins.version), max(ins.version)
        FROM unnest($10::text[], $11::text[]) AS k(stream, key)
        JOIN ins USING (stream)
        GROUP BY k.key, k.stream
    )
    SELECT {_RETURNING} FROM ins
    """


FIND_KEYS = (
    "SELECT key, stream, event_ids, version FROM idempotency_keys "
    "WHERE shard = %s AND key = ANY(%s)"
)

STREAM_VERSION = "SELECT coalesce(max(version), 0) FROM events WHERE stream = %s"

#: $1 all types?, $2 wanted types, $3 shard, $4 after txid (text), $5 after id, $6 limit.
READ_PAGE = f"""
    SELECT {_COLUMNS.format(
        payload="CASE WHEN $1::bool OR type = ANY($2::text[]) THEN payload END",
        metadata="CASE WHEN $1::bool OR type = ANY($2::text[]) THEN metadata END",
    )}
    FROM events
    WHERE shard = $3::int AND (txid, id) > ($4::text::xid8, $5::bigint)
      AND txid < pg_snapshot_xmin(pg_current_snapshot())
    ORDER BY events.txid, events.id
    LIMIT $6::int
"""

#: READ_PAGE for bulk readers (the replay): the same rows in the same order under the same
#: rule, as one row of arrays (wanted events only) with every wanted payload concatenated
#: into one bytea, unpacked in one go; far cheaper per event than a row each. The arrays are
#: aggregated in the order of one sorted subquery (one sort, not one per aggregate: an
#: aggregate's own ORDER BY sorts its input again); the reader checks that order. $1 all
#: types, $2 the wanted types, $3 shard, $4/$5 the position after which to read, $6 the limit.
READ_PAGE_BULK = """
    WITH page AS MATERIALIZED (
        SELECT id, stream, version, type, schema_version, actor, payload, metadata,
               (extract(epoch FROM created_at) * 1000)::bigint AS created_ms, txid,
               $1::bool OR type = ANY($2::text[]) AS wanted
        FROM events
        WHERE shard = $3::int AND (txid, id) > ($4::text::xid8, $5::bigint)
          AND txid < pg_snapshot_xmin(pg_current_snapshot())
        ORDER BY events.txid, events.id
        LIMIT $6::int
    ), last AS (SELECT txid::text AS txid_text, id FROM page ORDER BY txid DESC, id DESC LIMIT 1)
    SELECT (SELECT count(*) FROM page), (SELECT txid_text FROM last), (SELECT id FROM last),
           array_agg(id), array_agg(stream), array_agg(version), array_agg(type),
           array_agg(schema_version), array_agg(actor), array_agg(metadata::text),
           array_agg(created_ms), array_agg(txid::text), string_agg(payload, ''::bytea)
    FROM (SELECT * FROM page WHERE wanted ORDER BY txid, id) AS wanted
"""

#: Whether any event (safe to read or not yet) follows a position: $1 shard, $2 txid, $3 id.
WAITING = """
    SELECT EXISTS (
        SELECT 1 FROM events WHERE shard = $1::int AND (txid, id) > ($2::text::xid8, $3::bigint)
    )
"""

SELECT_ALL = "SELECT " + _COLUMNS.format(payload="payload", metadata="metadata") + " FROM events"

HEAD = (
    "SELECT txid::text AS txid_text, id FROM events WHERE shard = %s "
    "ORDER BY events.txid DESC, events.id DESC LIMIT 1"
)

#: The newest position of a shard below every transaction still open (``%s`` the shard):
#: where a reader starting "from now" begins, so that an event an open transaction is
#: writing, committed later behind the head, still comes after it.
SAFE_HEAD = (
    "SELECT txid::text AS txid_text, id FROM events WHERE shard = %s "
    "AND txid < pg_snapshot_xmin(pg_current_snapshot()) "
    "ORDER BY events.txid DESC, events.id DESC LIMIT 1"
)
