-- Logical shard @shard@: the account a share was made as (``server.domain.shareout
-- .account_key``: its name and where it lives), recorded with the attempt and the post, so
-- that a deletion after a re-link to another account never goes there. NULL for shares made
-- before it.
ALTER TABLE @schema@.shares ADD COLUMN account text;
