-- Push devices (server/store/devices.py): the inline projection of the device streams.
--
-- A token's stream and its row live in the token's logical shard (sha256 of the token, as
-- usernames are placed), so the primary key on the token, in the one database that shard
-- maps to, is the global claim: one owner per token. The table is per physical database
-- rather than per shard schema so that "the devices of user U" is one indexed query per
-- physical database, however many logical shards there are; `shard` keeps each row's
-- logical shard, so rows move with their shard.

CREATE TABLE push_devices (
    token         text    PRIMARY KEY,
    shard         integer NOT NULL,
    user_id       bigint  NOT NULL,
    platform      text    NOT NULL CHECK (platform IN ('ios', 'android')),
    app           text    NOT NULL DEFAULT '',
    locale        text    NOT NULL DEFAULT '',
    registered_ms bigint  NOT NULL,            -- the last DeviceRegistered's time
    event_id      bigint  NOT NULL             -- the last DeviceRegistered
);
CREATE INDEX push_devices_user ON push_devices (user_id);
