-- Name the event types appended in the relay's notification ("SHARD:TYPE,TYPE"), so it kicks
-- only the consumers that want one of them instead of every consumer of the shard.
CREATE OR REPLACE FUNCTION events_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('shutterlog_events', s::text || ':' || ts)
    FROM (SELECT shard AS s, string_agg(DISTINCT type, ',') AS ts
          FROM appended GROUP BY shard) x;
    RETURN NULL;
END
$$;
