-- Logical shard @shard@: accounts, the username claims, follow edges, blocks and apps.
-- Inline projections of the log (written in the append's transaction), except `followers`
-- and users.followed_by_count, which the `followers` consumer writes.

CREATE TABLE @schema@.users (
    id                bigint  PRIMARY KEY,
    username          text    NOT NULL,
    full_name         text    NOT NULL,
    bio               text    NOT NULL DEFAULT '',
    website           text    NOT NULL DEFAULT '',
    email             text    NOT NULL DEFAULT '',
    password_hash     text    NOT NULL,
    is_private        boolean NOT NULL DEFAULT false,
    created_ms        bigint  NOT NULL,
    media_count       integer NOT NULL DEFAULT 0 CHECK (media_count >= 0),
    follows_count     integer NOT NULL DEFAULT 0 CHECK (follows_count >= 0),
    followed_by_count integer NOT NULL DEFAULT 0 CHECK (followed_by_count >= 0)
);

-- This shard's part of the global username index: usernames hash to their shard, so the
-- primary key is a global uniqueness check. text_pattern_ops serves prefix search.
CREATE TABLE @schema@.usernames (
    username_lower text   PRIMARY KEY,
    user_id        bigint NOT NULL
);
CREATE INDEX usernames_prefix ON @schema@.usernames (username_lower text_pattern_ops);

-- The follower's side of each edge (this shard holds the follower). `id` is the id of the
-- event that created the edge: time-ordered and unique, it is the pagination key.
CREATE TABLE @schema@.follows (
    follower   bigint NOT NULL,
    followee   bigint NOT NULL,
    state      text   NOT NULL CHECK (state IN ('requested', 'active')),
    id         bigint NOT NULL,
    created_ms bigint NOT NULL,
    PRIMARY KEY (follower, followee)
);
CREATE INDEX follows_page ON @schema@.follows (follower, state, id DESC);

-- The followee's side (this shard holds the followee), written by the `followers` consumer.
CREATE TABLE @schema@.followers (
    followee   bigint NOT NULL,
    follower   bigint NOT NULL,
    state      text   NOT NULL CHECK (state IN ('requested', 'active')),
    id         bigint NOT NULL,
    created_ms bigint NOT NULL,
    PRIMARY KEY (followee, follower)
);
CREATE INDEX followers_page ON @schema@.followers (followee, state, id DESC);

CREATE TABLE @schema@.blocks (
    blocker    bigint NOT NULL,
    blocked    bigint NOT NULL,
    id         bigint NOT NULL,
    PRIMARY KEY (blocker, blocked)
);

CREATE TABLE @schema@.apps (
    client_id      text    PRIMARY KEY,
    name           text    NOT NULL,
    redirect_uri   text    NOT NULL,
    secret_box     bytea   NOT NULL,
    require_signed boolean NOT NULL,
    revoked        boolean NOT NULL DEFAULT false,
    created_ms     bigint  NOT NULL
);
