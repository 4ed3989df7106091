-- Logical shard @shard@: share-out. Linked accounts (inline projection of the link streams
-- `link:{user}:{service}`, in the user's shard) and the share ledger (one row per medium and
-- service, in the medium's shard: the record of each share's attempts and result, written by
-- the `shareout` consumer and its tasks, never by the API).

CREATE TABLE @schema@.linked_accounts (
    user_id     bigint NOT NULL,
    service     text   NOT NULL,
    account     text   NOT NULL,  -- the remote handle, as the service named it when verified
    credentials text   NOT NULL,  -- a Fernet token (server/crypto.py) of the credentials JSON
    link_id     bigint NOT NULL,  -- the AccountLinked event: a later unlink names the link it ends
    linked_ms   bigint NOT NULL,
    PRIMARY KEY (user_id, service)
);

CREATE TABLE @schema@.shares (
    media_id   bigint NOT NULL,
    service    text   NOT NULL,
    key        text   NOT NULL UNIQUE,  -- share_key(MediaPosted id, service): the idempotency key
    state      text   NOT NULL DEFAULT 'queued' CHECK (state IN (
                   'queued', 'attempting', 'posted', 'failed', 'cancelled',
                   'deleting', 'deleted', 'delete_failed')),
    remote_id  text,
    url        text,
    error      text,
    attempts   integer NOT NULL DEFAULT 0,  -- failed tries so far (RetryLater)
    next_ms    bigint,                      -- not before this (a service's Retry-After)
    created_ms bigint NOT NULL,
    updated_ms bigint NOT NULL,
    PRIMARY KEY (media_id, service)
);
