-- The geo index, PostGIS backend (plugins/geo/postgis.py; its SQL is in server/store/geo.py).
--
-- Like every global migration this runs in every physical database, but the index is used in
-- one only (geo.postgis_dsn, the shard map's first database by default): a media search is
-- global (all users' media near a point), so it must see one table, not one per shard. When
-- one PostgreSQL is not enough for it, the Solr backend scales it out.
--
-- CREATE EXTENSION needs a role allowed to create postgis (a superuser), or the extension
-- created beforehand by one: IF NOT EXISTS then makes this a no-op.

CREATE EXTENSION IF NOT EXISTS postgis;

-- Namespaces (generations) of the index: each is its own table geo_points_<name>; exactly
-- one is live, and the view geo_live reads and writes it. A rebuild fills a new namespace
-- and geo_swap() repoints the view in one transaction: searches see the old or the new.
CREATE TABLE geo_namespaces (
    name       text        PRIMARY KEY CHECK (name ~ '^[a-z][a-z0-9_]{0,31}$'),
    live       boolean     NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX geo_namespaces_one_live ON geo_namespaces (live) WHERE live;

CREATE FUNCTION geo_create_namespace(ns text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    t text := 'geo_points_' || ns;
BEGIN
    INSERT INTO geo_namespaces (name) VALUES (ns);  -- unique_violation if it exists
    -- Distances are on the sphere of radius 6,371,008.7714 m (searches pass
    -- use_spheroid => false), as Solr's are: see server/domain/geo.py.
    EXECUTE format(
        'CREATE TABLE %I (
            media_id    bigint  PRIMARY KEY,
            owner_id    bigint  NOT NULL,
            location_id bigint,
            created_ms  bigint  NOT NULL,
            hidden      boolean NOT NULL DEFAULT false,
            geog        geography(Point, 4326) NOT NULL
        )', t);
    -- Radius filter (ST_DWithin) and nearest-first order (KNN <->).
    EXECUTE format('CREATE INDEX %I ON %I USING gist (geog)', t || '_geog', t);
    -- Newest-first order: the planner walks this and filters by distance when the area is
    -- dense, or takes the GiST index and sorts when it is sparse.
    EXECUTE format('CREATE INDEX %I ON %I (created_ms DESC, media_id DESC)', t || '_time', t);
    -- An account going private hides its points.
    EXECUTE format('CREATE INDEX %I ON %I (owner_id)', t || '_owner', t);
END
$$;

CREATE FUNCTION geo_swap(ns text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    previous text;
BEGIN
    PERFORM 1 FROM geo_namespaces WHERE name = ns FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no geo namespace %', ns USING ERRCODE = 'undefined_object';
    END IF;
    SELECT name INTO previous FROM geo_namespaces WHERE live FOR UPDATE;
    UPDATE geo_namespaces SET live = false WHERE live;
    UPDATE geo_namespaces SET live = true WHERE name = ns;
    EXECUTE format('CREATE OR REPLACE VIEW geo_live AS SELECT * FROM %I', 'geo_points_' || ns);
    RETURN previous;
END
$$;

CREATE FUNCTION geo_drop_namespace(ns text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    is_live boolean;
BEGIN
    SELECT live INTO is_live FROM geo_namespaces WHERE name = ns FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no geo namespace %', ns USING ERRCODE = 'undefined_object';
    END IF;
    IF is_live THEN
        RAISE EXCEPTION 'geo namespace % is live', ns USING ERRCODE = 'object_in_use';
    END IF;
    EXECUTE format('DROP TABLE %I', 'geo_points_' || ns);
    DELETE FROM geo_namespaces WHERE name = ns;
END
$$;

SELECT geo_create_namespace('main');
SELECT geo_swap('main');
