-- Logical shard @shard@: a location's media, newest first (/v1/locations/{id}/media/recent
-- reads every shard's media through this index: the media rows are the truth, no copy).
CREATE INDEX media_location ON @schema@.media (location_id, id DESC)
    WHERE location_id IS NOT NULL;
