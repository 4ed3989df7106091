"""64-bit, time-sortable ids: 41 bits of milliseconds, 13 bits of logical shard, 10 of sequence.

Ids are minted inside PostgreSQL by ``next_id()`` in each logical shard's schema (see
``server/store/sql/shard``); this module only composes and decodes them, so any id says which
shard holds its row. Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

#: The custom epoch: 2024-01-01T00:00:00Z, in milliseconds since the Unix epoch.
EPOCH_MS = 1_704_067_200_000
EPOCH = datetime(2024, 1, 1, tzinfo=UTC)

TIME_BITS = 41
SHARD_BITS = 13
SEQUENCE_BITS = 10

MAX_SHARDS = 1 << SHARD_BITS
SEQUENCES_PER_MS = 1 << SEQUENCE_BITS
MAX_ID = (1 << (TIME_BITS + SHARD_BITS + SEQUENCE_BITS)) - 1


@dataclass(frozen=True, slots=True)
class IdParts:
    """The three fields of an id."""

    millis: int  # milliseconds since EPOCH
    shard: int
    sequence: int

    @property
    def time(self) -> datetime:
        """The moment the id was minted (UTC, millisecond precision)."""
        return EPOCH + timedelta(milliseconds=self.millis)


def compose_id(millis: int, shard: int, sequence: int) -> int:
    """Build an id from its parts; raises ValueError when a part does not fit its bits."""
    if not 0 <= millis < (1 << TIME_BITS):
        raise ValueError(f"millis out of range: {millis}")
    if not 0 <= shard < MAX_SHARDS:
        raise ValueError(f"shard out of range: {shard}")
    if not 0 <= sequence < SEQUENCES_PER_MS:
        raise ValueError(f"sequence out of range: {sequence}")
    return (millis << (SHARD_BITS + SEQUENCE_BITS)) | (shard << SEQUENCE_BITS) | sequence


def decode_id(value: int) -> IdParts:
    """Split an id into (millis since EPOCH, shard, sequence); ValueError if not a valid id."""
    if not 0 < value <= MAX_ID:
        raise ValueError(f"not a shutterlog id: {value}")
    return IdParts(
        millis=value >> (SHARD_BITS + SEQUENCE_BITS),
        shard=(value >> SEQUENCE_BITS) & (MAX_SHARDS - 1),
        sequence=value & (SEQUENCES_PER_MS - 1),
    )


def shard_of(value: int) -> int:
    """The logical shard encoded in an id."""
    return decode_id(value).shard


def min_id_at(moment: datetime) -> int:
    """The smallest id that could be minted at ``moment``: for time-range queries over ids."""
    millis = max(0, int((moment - EPOCH) / timedelta(milliseconds=1)))
    return millis << (SHARD_BITS + SEQUENCE_BITS)


def millis_of(value: int) -> int:
    """Milliseconds since EPOCH of an id (a float-exact sort score for Redis sorted sets)."""
    return value >> (SHARD_BITS + SEQUENCE_BITS)
