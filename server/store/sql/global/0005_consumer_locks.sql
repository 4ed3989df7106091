-- A worker's advance job brackets its work on a (consumer, shard) with these two calls: one
-- round trip each instead of two (workers/advance.py). Both are VOLATILE PL/pgSQL, so each
-- statement inside takes a snapshot of its own (READ COMMITTED): one taken AFTER the lock
-- changed hands, which is the point.

-- Take the session advisory lock of the pair; if taken, read its checkpoint (all NULL when
-- the pair has none yet). The checkpoint is read after the lock is held, so it includes the
-- save the previous holder committed before unlocking.
CREATE OR REPLACE FUNCTION consumer_lock(
    lock_key bigint, of_consumer text, of_shard integer,
    OUT locked boolean, OUT at_txid text, OUT at_event_id bigint, OUT run_status text,
    OUT stop_reason text, OUT failed_attempts integer, OUT error text
) LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    locked := pg_try_advisory_lock(lock_key);
    IF locked THEN
        SELECT c.txid::text, c.event_id, c.status, c.reason, c.failures, c.last_error
        INTO at_txid, at_event_id, run_status, stop_reason, failed_attempts, error
        FROM checkpoints c WHERE c.consumer = of_consumer AND c.shard = of_shard;
    END IF;
END
$$;

-- Release the pair's lock, then say whether any event (safe to read yet or not) follows the
-- position the holder reached: one appended while it held the lock had its kick dropped, so
-- the holder goes on. The check runs after the unlock, in a snapshot of its own.
CREATE OR REPLACE FUNCTION consumer_release(
    lock_key bigint, of_shard integer, after_txid text, after_id bigint
) RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_advisory_unlock(lock_key);
    RETURN EXISTS (SELECT 1 FROM events
                   WHERE shard = of_shard AND (txid, id) > (after_txid::xid8, after_id));
END
$$;
