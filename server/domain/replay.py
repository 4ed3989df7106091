"""Replaying projections from the log: what each projection is, how a rebuilt one is compared
with the live one, and progress figures. Pure: no I/O (``workers/replay.py`` does the work).

A projection is rebuilt into a **namespace** of its own (a Redis key prefix, shadow tables,
a geo index namespace) while the live system runs, then swapped in atomically. How each one
is rebuilt (README, "Replay"):

- a Redis projection runs its consumer's handler from the origin of the log with every key
  under ``replay:{run}:``;
- ``liked`` runs its consumer into shadow tables; ``geo`` runs ``geo_index`` into a new geo
  namespace and a shadow ``locations`` table;
- ``followers`` (the followee's side of follow edges) is the inline projection of the
  ``Follower*`` events that the ``followers`` consumer appended: the rebuild re-projects
  those events into shadow tables. It never runs the consumer, which would append again.

Consumers that talk to the outside world (``side_effect=True``) are never run; the only
exception is the real-time history, rebuilt by the ``realtime`` consumer's mapping with
publishing switched off (``RealtimeStore(publish=False)``): the histories are rewritten,
nothing is sent.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

#: Redis keys of every replay namespace start with this.
NAMESPACE_ROOT = "replay:"


@dataclass(frozen=True)
class Spec:
    """One projection the replay CLI can rebuild."""

    name: str
    kind: str  # "redis", "liked", "followers", "geo"
    consumer: str | None  # the live consumer whose checkpoints and locks the swap takes over
    patterns: tuple[str, ...] = ()  # Redis: live keys of the projection (SCAN patterns)
    excluded: tuple[str, ...] = ()  # Redis: live keys matching these are not the projection's
    complete: tuple[str, ...] = ()  # Redis: sorted sets that get the completeness marker
    by_shard: bool = False  # its state is partitioned by logical shard: --shard applies
    about: str = ""


SPECS: dict[str, Spec] = {s.name: s for s in (
    Spec("feeds", "redis", "fanout", ("feed:*", "umedia:*", "fanout:pulled"),
         complete=("feed:", "umedia:"),
         about="home feeds, users' recent media, pulled accounts (the fanout consumer)"),
    Spec("activity", "redis", "activity", ("activity:*",),
         about="activity feeds (the activity consumer)"),
    Spec("counters", "redis", "counters", ("counts:*",),
         about="the like and comment counter cache (the counters consumer)"),
    Spec("tags", "redis", "tags", ("tag:*", "tags:names"),
         about="tag sets and the tag name index (the tags consumer)"),
    Spec("realtime", "redis", "realtime", ("rt:*",), excluded=("rt:live", "rt:feed:"),
         about="real-time histories of the last realtime.history_ttl seconds (the realtime "
               "consumer's mapping, publishing nothing); home feed sources excluded"),
    Spec("liked", "liked", "liked",
         about="liker-side likes, PostgreSQL table liked (the liked consumer, shadow tables)"),
    Spec("followers", "followers", None, by_shard=True,
         about="followee-side edges, PostgreSQL table followers and followed_by_count "
               "(Follower* events re-projected into shadow tables; nothing appended)"),
    Spec("geo", "geo", "geo_index",
         about="the geo index and the locations table (the geo_index consumer, a new geo "
               "namespace and a shadow table)"),
)}
#: ``all``, in the order a run goes through them (followers first: fanout reads it).
ALL = ("followers", "liked", "feeds", "activity", "counters", "tags", "geo", "realtime")


class ReplayUsageError(ValueError):
    """A replay asked for something that cannot be done (names what and why)."""


def resolve(names: Iterable[str], shards: Iterable[int] | None, count: int
            ) -> tuple[list[Spec], list[int] | None]:
    """The projections named (``all`` expands), checked against ``--shard``, and the shards
    asked for, each once, in order (a run of the same shards resumes whatever order they
    were named in)."""
    picked: list[str] = []
    for name in names:
        if name == "all":
            picked += [n for n in ALL if n not in picked]
        elif name in SPECS:
            if name not in picked:
                picked.append(name)
        else:
            raise ReplayUsageError(
                f"unknown projection {name!r}: choose from {', '.join([*SPECS, 'all'])}")
    only = sorted(set(shards)) if shards is not None else None
    if only is not None:
        bad = [s for s in only if not 0 <= s < count]
        if bad:
            raise ReplayUsageError(f"--shard {bad[0]}: shards are 0 to {count - 1}")
        whole = [n for n in picked if not SPECS[n].by_shard]
        if whole:
            raise ReplayUsageError(
                f"--shard applies to projections kept per logical shard (followers); "
                f"{', '.join(whole)} mix every shard's events in one key space: replay "
                "them whole")
    return [SPECS[n] for n in sorted(picked, key=ALL.index)], only


def prefix(run: int) -> str:
    """The Redis key prefix of run ``run``'s namespace."""
    return f"{NAMESPACE_ROOT}{run}:"


def marker(run: int) -> str:
    """A key saying run ``run``'s namespace exists (outside the prefix: never swapped)."""
    return f"{NAMESPACE_ROOT}{run}"


def is_projection_key(spec: Spec, key: str) -> bool:
    """Whether live key ``key`` belongs to ``spec`` (its patterns minus its exclusions)."""
    if any(key.startswith(x) for x in spec.excluded):
        return False
    return any(key == p or (p.endswith("*") and key.startswith(p[:-1])) for p in spec.patterns)


# --- edges ---------------------------------------------------------------------------------

#: A follow edge as a table row holds it: (state, id of the event that created it, its ms).
EdgeRow = tuple[str, int, int]


def fold_edges(current: Mapping[tuple[int, int], EdgeRow],
               changes: Iterable[tuple[tuple[int, int], str, int, int]]
               ) -> dict[tuple[int, int], EdgeRow | None]:
    """The rows a run of edge changes leaves, given the rows before (``current``): each
    change is (edge, new state or "none", event id, ms), in log order. An edge keeps the id
    and time of the event that created it while it changes state, as ``graph.set_edge``
    does one event at a time; None: the row is gone."""
    out: dict[tuple[int, int], EdgeRow | None] = {}
    for edge, state, event_id, ms in changes:
        old = out[edge] if edge in out else current.get(edge)
        if state == "none":
            out[edge] = None
        elif old is None:
            out[edge] = (state, event_id, ms)
        else:
            out[edge] = (state, old[1], old[2])
    return out


# --- comparing -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Difference:
    """Where a rebuilt projection and the live one disagree: ``expected`` is the value the
    log gives, ``found`` the live one (None: absent)."""

    key: str
    expected: Any
    found: Any

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, "expected": self.expected, "found": self.found}


#: The completeness marker of feeds (``server.domain.feeds.COMPLETE``): a reader's
#: bookkeeping, not content, so comparisons leave it out.
_COMPLETE = "-"


def normalize(key: str, kind: str, value: Any) -> Any:
    """A Redis value in comparable form: zsets and hashes as dicts of text, sets sorted,
    streams as the list of their messages' bodies (ids are arrival times, never equal)."""
    if kind == "zset":
        return {_text(m): s for m, s in value if _text(m) != _COMPLETE}
    if kind == "hash":
        return {_text(k): _text(v) for k, v in value.items()}
    if kind == "set":
        return sorted(_text(m) for m in value)
    if kind == "stream":
        return [_text(fields[b"m"]) for _id, fields in value]
    return _text(value)


def _text(v: Any) -> Any:
    return v.decode() if isinstance(v, bytes) else v


def compare(expected: Mapping[str, Any], found: Mapping[str, Any], *, tail: bool = False
            ) -> list[Difference]:
    """Differences between two namespaces given as ``{key: normalized value}``. Dicts are
    compared member by member (``key member``). ``tail``: live lists (real-time histories)
    need only equal the end of the rebuilt ones, and keys missing live are fine (the live
    history starts when the consumer was deployed and expires)."""
    out: list[Difference] = []
    for key in sorted(set(expected) | set(found)):
        e, f = expected.get(key), found.get(key)
        if tail:
            if f is None:
                continue
            if isinstance(e, list) and isinstance(f, list) and _tail_of(e, f):
                continue
        if e == f:
            continue
        if isinstance(e, dict) and isinstance(f, dict):
            for member in sorted(set(e) | set(f), key=str):
                if e.get(member) != f.get(member):
                    out.append(Difference(f"{key} {member}", e.get(member), f.get(member)))
        else:
            out.append(Difference(key, e, f))
    return out


def _tail_of(rebuilt: list[str], live: list[str]) -> bool:
    """Whether each shard's messages in ``live`` end ``rebuilt``'s of that shard. A source
    fed by several shards interleaves them in whatever order the consumers ran, so only
    each shard's own order is the log's."""
    def by_shard(messages: list[str]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for m in messages:
            out.setdefault(str(json.loads(m).get("position", "")).split(":")[0], []).append(m)
        return out

    r = by_shard(rebuilt)
    return all(r.get(shard, [])[len(r.get(shard, [])) - len(mine):] == mine
               for shard, mine in by_shard(live).items())


def compare_rows(name: str, expected: Iterable[tuple[Any, ...]], found: Iterable[tuple[Any, ...]]
                 ) -> list[Difference]:
    """Differences between two tables' rows, keyed by their first column(s) up to the last
    (``key`` is ``name`` and the row's key)."""
    e = {tuple(r[:-1]): r[-1] for r in expected}
    f = {tuple(r[:-1]): r[-1] for r in found}
    return [Difference(f"{name} {' '.join(map(str, k))}", e.get(k), f.get(k))
            for k in sorted(set(e) | set(f)) if e.get(k) != f.get(k)]


# --- progress ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Progress:
    """How far a run is: events applied of about ``total``, after ``seconds``."""

    done: int
    total: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.done / self.seconds if self.seconds > 0 else 0.0

    @property
    def left_seconds(self) -> float | None:
        """Estimated seconds to go (None: no rate yet)."""
        if self.rate <= 0:
            return None
        return max(0.0, (self.total - self.done) / self.rate)

    def bar(self, width: int = 30) -> str:
        """``[#####.....]  1,234/10,000 events  5,678 events/s  0:02 left``"""
        frac = min(1.0, self.done / self.total) if self.total else 1.0
        filled = math.floor(frac * width)
        left = self.left_seconds
        eta = "--:--" if left is None else clock(left)
        return (f"[{'#' * filled}{'.' * (width - filled)}] {self.done:,}/{self.total:,} events"
                f"  {self.rate:,.0f} events/s  {eta} left")

    def as_dict(self) -> dict[str, Any]:
        left = self.left_seconds
        return {"done": self.done, "total": self.total, "seconds": round(self.seconds, 3),
                "events_per_second": round(self.rate, 1),
                "seconds_left": None if left is None else round(left, 1)}


def clock(seconds: float) -> str:
    """``m:ss`` (``h:mm:ss`` past an hour)."""
    s = int(round(seconds))
    h, rest = divmod(s, 3600)
    m, sec = divmod(rest, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"
