-- Logical shard @shard@: push notification kinds each user switched off (the inline
-- projection of NotificationSettingsChanged; no row: everything on).

CREATE TABLE @schema@.notification_settings (
    user_id  bigint PRIMARY KEY,
    disabled text[] NOT NULL DEFAULT '{}'
);
