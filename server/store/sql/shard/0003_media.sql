-- Logical shard @shard@: media, likes, comments (inline projections of their streams, all in
-- the medium's shard, which is its owner's), the liker-side list of liked media (written by
-- the `liked` consumer in the liker's shard) and the blobs media reference (for blob GC).

CREATE TABLE @schema@.media (
    id            bigint  PRIMARY KEY,
    owner_id      bigint  NOT NULL,
    type          text    NOT NULL CHECK (type IN ('image', 'video')),
    state         text    NOT NULL CHECK (state IN ('processing', 'ready', 'deleted')),
    blob          text    NOT NULL,
    width         integer NOT NULL,
    height        integer NOT NULL,
    duration_ms   integer NOT NULL DEFAULT 0,
    caption       text    NOT NULL DEFAULT '',
    tags          text[]  NOT NULL DEFAULT '{}',
    filter        text    NOT NULL DEFAULT 'Normal',
    lat           double precision,
    lng           double precision,
    location_name text    NOT NULL DEFAULT '',
    location_id   bigint,
    visibility    text    NOT NULL CHECK (visibility IN ('public', 'private')),
    images        jsonb   NOT NULL DEFAULT '{}',
    videos        jsonb   NOT NULL DEFAULT '{}',
    -- The counters: the truth behind the Redis counter cache. The like and comment
    -- transactions update them last, so the row lock is held for the commit only.
    like_count    integer NOT NULL DEFAULT 0 CHECK (like_count >= 0),
    comment_count integer NOT NULL DEFAULT 0 CHECK (comment_count >= 0),
    created_ms    bigint  NOT NULL
) WITH (fillfactor = 70);  -- room on the page: counter updates stay HOT (no index writes)
CREATE INDEX media_owner ON @schema@.media (owner_id, id DESC);

CREATE TABLE @schema@.likes (
    media_id   bigint NOT NULL,
    user_id    bigint NOT NULL,
    id         bigint NOT NULL,  -- the MediaLiked event's id: time-ordered, the page key
    created_ms bigint NOT NULL,
    PRIMARY KEY (media_id, user_id)
);
CREATE INDEX likes_page ON @schema@.likes (media_id, id DESC);

-- The liker's side (this shard holds the liker): `/v1/users/self/media/liked`.
CREATE TABLE @schema@.liked (
    user_id  bigint NOT NULL,
    media_id bigint NOT NULL,
    like_id  bigint NOT NULL,
    PRIMARY KEY (user_id, media_id)
);
CREATE INDEX liked_page ON @schema@.liked (user_id, like_id DESC);

CREATE TABLE @schema@.comments (
    id         bigint  PRIMARY KEY,
    media_id   bigint  NOT NULL,
    author     bigint  NOT NULL,
    text       text    NOT NULL,
    created_ms bigint  NOT NULL,
    deleted    boolean NOT NULL DEFAULT false
);
CREATE INDEX comments_media ON @schema@.comments (media_id, id);

CREATE TABLE @schema@.media_blobs (
    blob     text   NOT NULL,
    media_id bigint NOT NULL,
    PRIMARY KEY (blob, media_id)
);
