-- Logical shard @shard@: its schema and its id function.
--
-- The sequence holds (milliseconds since 2024-01-01 << 10 | sequence). It only moves forward,
-- and only under a session advisory lock that is released at once (never held until commit),
-- so ids are unique and increasing per shard. When more than 1,024 ids are asked for in one
-- millisecond, the 1,025th rolls into the next millisecond instead of colliding.

CREATE SCHEMA @schema@;

CREATE SEQUENCE @schema@.id_clock MINVALUE 0 START 0;

CREATE FUNCTION @schema@.next_ids(n integer, at timestamptz DEFAULT clock_timestamp())
RETURNS bigint[] LANGUAGE plpgsql AS $$
DECLARE
    wall bigint := (floor(extract(epoch FROM at) * 1000)::bigint - 1704067200000) << 10;
    first bigint;
BEGIN
    IF n < 1 THEN
        RAISE EXCEPTION 'next_ids: n must be positive, got %', n;
    END IF;
    BEGIN
        -- Inside the block: a cancel while waiting for the lock unlocks nothing held (the
        -- unlock of a lock not held only warns), a cancel after it releases it.
        PERFORM pg_advisory_lock(1397244992, @shard@);
        first := greatest(nextval('@schema@.id_clock'), wall);
        PERFORM setval('@schema@.id_clock', first + n - 1);
        PERFORM pg_advisory_unlock(1397244992, @shard@);
    EXCEPTION WHEN OTHERS THEN
        PERFORM pg_advisory_unlock(1397244992, @shard@);
        RAISE;
    END;
    RETURN ARRAY(
        SELECT (((first + i) >> 10) << 23) | (@shard@::bigint << 10) | ((first + i) & 1023)
        FROM generate_series(0, n - 1) AS i
    );
END
$$;

CREATE FUNCTION @schema@.next_id(at timestamptz DEFAULT clock_timestamp())
RETURNS bigint LANGUAGE sql AS $$ SELECT (@schema@.next_ids(1, at))[1] $$;
