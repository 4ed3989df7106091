"""The API service, the event store, shards and the pure domain core."""
