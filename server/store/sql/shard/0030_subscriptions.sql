-- Logical shard @shard@: webhook subscriptions of the apps whose client id hashes here.
-- Inline projection of SubscriptionCreated / SubscriptionDeleted / SubscriptionDisabled.
CREATE TABLE @schema@.subscriptions (
    id             bigint  PRIMARY KEY,
    client_id      text    NOT NULL,
    object         text    NOT NULL,
    object_id      text,
    lat            double precision,
    lng            double precision,
    radius_m       double precision,
    callback_url   text    NOT NULL,
    status         text    NOT NULL DEFAULT 'active'
                           CHECK (status IN ('active', 'disabled', 'deleted')),
    reason         text    NOT NULL DEFAULT '',
    created_ms     bigint  NOT NULL,
    disabled_ms    bigint
);
CREATE INDEX subscriptions_app ON @schema@.subscriptions (client_id, id)
    WHERE status <> 'deleted';
CREATE INDEX subscriptions_active ON @schema@.subscriptions (id) WHERE status = 'active';
