-- Logical shard @shard@: the hydration read of media as a PL/pgSQL function, so its plan is
-- cached per session: the API reads a page of media with ONE query per physical database, a
-- UNION ALL of these functions over the database's shards; as plain SQL that union of joins
-- and EXISTS subqueries cost more to plan than to run.

CREATE FUNCTION @schema@.hydrate_media(ids bigint[], viewer bigint)
RETURNS TABLE (
    id bigint, owner_id bigint, type text, state text, blob text, width integer,
    height integer, caption text, tags text[], filter text, lat double precision,
    lng double precision, location_name text, location_id bigint, visibility text,
    images jsonb, videos jsonb, created_ms bigint, username text, full_name text,
    is_private boolean, viewer_likes boolean, viewer_blocked boolean
) LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN QUERY
    SELECT m.id, m.owner_id, m.type, m.state, m.blob, m.width, m.height, m.caption, m.tags,
           m.filter, m.lat, m.lng, m.location_name, m.location_id, m.visibility, m.images,
           m.videos, m.created_ms, u.username, u.full_name, u.is_private,
           EXISTS (SELECT 1 FROM @schema@.likes l WHERE l.media_id = m.id AND l.user_id = viewer),
           EXISTS (SELECT 1 FROM @schema@.blocks b
                   WHERE b.blocker = m.owner_id AND b.blocked = viewer)
    FROM @schema@.media m JOIN @schema@.users u ON u.id = m.owner_id
    WHERE m.id = ANY(ids);
END
$$;
