-- Locations (issue 10): named places that media were posted at, for /v1/locations. A
-- projection of MediaPosted written by the geo_index consumer (server/store/places.py), in
-- the geo database (geo.postgis_dsn) whichever geo backend is configured; like every global
-- migration it runs in every physical database, and the table stays empty elsewhere.
--
-- A row's name and coordinates are those of the medium with the smallest id that named the
-- place (first_media_id), so the table is the same whatever order shards are applied in:
-- a replay builds exactly what the live consumer built. The replay CLI may build a copy
-- (CREATE TABLE x (LIKE locations INCLUDING ALL)) and rename it in: the store takes the
-- table's name.
CREATE TABLE locations (
    id             bigint           PRIMARY KEY,
    name           text             NOT NULL,
    lat            double precision NOT NULL,
    lng            double precision NOT NULL,
    geog           geography(Point, 4326) NOT NULL,
    first_media_id bigint           NOT NULL
);
-- /v1/locations/search?lat&lng&distance (ST_DWithin, nearest first by KNN)
CREATE INDEX locations_geog ON locations USING gist (geog);
-- /v1/locations/search?q= (name prefix, case-insensitive) and the upload's look-up of a
-- same-named place nearby.
CREATE INDEX locations_name ON locations (lower(name) text_pattern_ops);
