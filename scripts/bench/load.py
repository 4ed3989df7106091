"""The shared HTTP load generator of the API benchmarks: wrk, driven by Lua scenarios.

wrk (C, event loop) spends a small fraction of a core on thousands of requests a second, so
on a 2-core machine it is not what limits a Python server. A ``Scenario`` is a named Lua
``request()`` function plus the data it draws from (Lua tables written to a file the script
loads), so later benchmarks add scenarios without touching the generator. Every run is
bounded in time (``-d``) and prints one JSON line from wrk's ``done()`` that ``run`` parses.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

#: The end of every script: per-thread ids, and a JSON summary with latency percentiles.
_COMMON = """
local counter = 0
local thread_id = 0
local threads = {}
function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end
function init(args)
  thread_id = tonumber(tid) or 0
  if DATA_FILE ~= "" then dofile(DATA_FILE) end
end
function next_n()
  counter = counter + 1
  return counter * THREADS + thread_id
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, '
    .. '"errors": %d, "non_2xx": %d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.timeout, e.status))
end
"""


@dataclass(frozen=True)
class Scenario:
    """A named kind of request: a Lua ``request()`` body and the Lua data it uses."""

    name: str
    lua: str  # defines request(); may use next_n(), thread_id and the data's tables
    data: Callable[[], dict[str, Sequence[str]]] = field(default=lambda: {})


@dataclass(frozen=True)
class Result:
    name: str
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int
    non_2xx: int

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def wrk_path() -> str:
    found = shutil.which("wrk")
    if found is None:
        raise SystemExit("wrk not found: apt-get install wrk (scripts/install-system-deps.sh)")
    return found


def lua_tables(data: dict[str, Sequence[str]]) -> str:
    """Lua source defining one array of strings per key."""
    return "\n".join(
        f"{name} = {{{', '.join(json.dumps(v) for v in values)}}}"
        for name, values in data.items()
    )


def run(scenario: Scenario, url: str, seconds: float, connections: int = 64,
        threads: int = 2) -> Result:
    """Run ``scenario`` against ``url`` for ``seconds`` with ``connections`` clients."""
    with tempfile.TemporaryDirectory(prefix="shutterlog-wrk-") as tmp:
        data_file = Path(tmp) / "data.lua"
        data_file.write_text(lua_tables(scenario.data()))
        script = Path(tmp) / "scenario.lua"
        script.write_text(f"DATA_FILE = {json.dumps(str(data_file))}\nTHREADS = {threads}\n"
                          + _COMMON + scenario.lua)
        out = subprocess.run(
            [wrk_path(), "-t", str(threads), "-c", str(connections), "-d",
             f"{max(1, round(seconds))}s", "--timeout", "30s", "-s", str(script), url],
            capture_output=True, text=True, timeout=seconds + 60,
        )
    if out.returncode != 0:
        raise SystemExit(f"wrk failed ({scenario.name}): {out.stderr.strip() or out.stdout}")
    line = next(x for x in reversed(out.stdout.splitlines()) if x.startswith("{"))
    raw = json.loads(line)
    return Result(scenario.name, raw["requests"], raw["duration_us"] / 1e6,
                  raw["p50_us"] / 1000, raw["p99_us"] / 1000, raw["errors"], raw["non_2xx"])
