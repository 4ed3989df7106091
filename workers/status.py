"""``shutterlog status``: consumers and their lag, dead letters, tasks, gearmand queues, workers."""

from __future__ import annotations

from typing import Any

from server.config import Config
from server.shards import ShardRouter
from server.store.consumers import ConsumerStore, PairState
from server.store.tasks import TaskStore
from workers import gearman
from workers.consumers import Consumers
from workers.jobs import advance_function


def report(config: Config, consumers: Consumers) -> dict[str, Any]:
    """Everything ``status`` shows, as plain data (``--json`` prints it as is)."""
    router = ShardRouter(config.shard_map, pool_size=1, name="shutterlog-status")
    try:
        store = ConsumerStore(router)
        tasks = TaskStore(router)
        states: list[PairState] = []
        task_counts: dict[str, int] = {}
        for db in router.databases():
            states += store.scan(db, consumers.wanted())
            for state, n in tasks.counts(db).items():
                task_counts[state] = task_counts.get(state, 0) + n
        letters = store.letters()
    finally:
        router.close()
    declared = {c.name: c for c in consumers.all()}
    out: list[dict[str, Any]] = []
    for name in sorted(set(declared) | {s.checkpoint.consumer for s in states}):
        mine = [s for s in states if s.checkpoint.consumer == name]
        c = declared.get(name)
        out.append({
            "name": name,
            "declared": c is not None,
            "types": sorted(c.types) if c else [],
            "on_failure": c.on_failure.value if c else None,
            "shards": len(mine),
            "behind_shards": sum(1 for s in mine if s.lag.behind),
            "lag_events": sum(s.lag.events for s in mine),
            "lag_seconds": round(max((s.lag.seconds for s in mine), default=0.0), 3),
            "stopped": [{"shard": s.checkpoint.shard, "reason": s.checkpoint.reason}
                        for s in mine if s.checkpoint.stopped],
            "failing": [{"shard": s.checkpoint.shard, "failures": s.checkpoint.failures,
                         "error": s.checkpoint.last_error}
                        for s in mine if s.checkpoint.failures and not s.checkpoint.stopped],
            "dead_letters": sum(1 for d in letters if d.consumer == name),
        })
    return {
        "consumers": out,
        "dead_letters": len(letters),
        "tasks": task_counts,
        "gearmand": [_gearmand(s, config.gearman.namespace) for s in config.gearman.servers],
    }


def _gearmand(server: str, namespace: str) -> dict[str, Any]:
    try:
        functions = [f for f in gearman.status(server) if f.function.startswith(namespace)]
        connected = gearman.workers(server)
    except gearman.GearmanError as e:
        return {"server": server, "up": False, "error": str(e)}
    ours = advance_function(namespace)
    return {
        "server": server,
        "up": True,
        "functions": [{"function": f.function, "queued": f.queued, "running": f.running,
                       "workers": f.workers} for f in functions],
        "workers": sum(1 for w in connected if ours in w.functions),
    }


def render(data: dict[str, Any]) -> str:
    """``report`` as text for people."""
    lines = ["consumers:"]
    if not data["consumers"]:
        lines.append("  (none declared)")
    for c in data["consumers"]:
        state = "stopped on " + ", ".join(str(s["shard"]) for s in c["stopped"]) \
            if c["stopped"] else ("failing" if c["failing"] else "running")
        if not c["declared"]:
            state = "not in this release"
        lines.append(
            f"  {c['name']:<24} {state:<20} behind on {c['behind_shards']}/{c['shards']} shards, "
            f"{c['lag_events']} events, {c['lag_seconds']:.1f}s; "
            f"dead letters {c['dead_letters']}"
        )
        for s in c["stopped"]:
            lines.append(f"      shard {s['shard']}: {s['reason']}")
        for s in c["failing"]:
            lines.append(f"      shard {s['shard']}: {s['failures']} failed attempts: {s['error']}")
    lines.append(f"dead letters: {data['dead_letters']} (shutterlog deadletters list)")
    tasks = data["tasks"]
    lines.append("tasks: " + (", ".join(f"{k} {v}" for k, v in sorted(tasks.items())) or "none"))
    for g in data["gearmand"]:
        if not g["up"]:
            lines.append(f"gearmand {g['server']}: DOWN ({g['error']})")
            continue
        lines.append(f"gearmand {g['server']}: {g['workers']} worker connection(s)")
        for f in g["functions"]:
            lines.append(f"  {f['function']:<30} queued {f['queued']:<6} running "
                         f"{f['running']:<6} workers {f['workers']}")
    return "\n".join(lines)
