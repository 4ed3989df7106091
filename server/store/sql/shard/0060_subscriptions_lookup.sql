-- Logical shard @shard@: the `webhooks` consumer's lookup of the active subscriptions that
-- could match a batch of new media (server/store/subscriptions.py: candidates): user, tag
-- and location subscriptions by their object id (a user subscription without one by
-- object_id IS NULL), geographies by a bounding box around the batch's points.
CREATE INDEX subscriptions_object ON @schema@.subscriptions (object, object_id)
    WHERE status = 'active';
CREATE INDEX subscriptions_geography ON @schema@.subscriptions (lat, lng)
    WHERE status = 'active' AND object = 'geography';
-- What read every active subscription (the consumer's former read); nothing does now.
DROP INDEX @schema@.subscriptions_active;
