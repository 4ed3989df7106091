"""``shutterlog run|up|down``: the whole system, in the foreground or in the background."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from scripts.commands.common import config, say, stack


def register(sub: argparse._SubParsersAction) -> None:
    run = sub.add_parser(
        "run", help="start the local stack and the whole system in the foreground",
        description="Start PostgreSQL, Redis and gearmand (the local stack), migrate, then the "
        "API service, the log relay and the worker pool. Ctrl-C stops every process it started.",
    )
    run.set_defaults(func=_run)
    up = sub.add_parser(
        "up", help="like run, in the background; returns once /healthz answers 200",
        description="Start 'shutterlog run' in the background (output in VAR/log/shutterlog.log) "
        "and wait until the API's /healthz answers 200.",
    )
    up.add_argument("--timeout", type=float, default=300.0,
                    help="seconds to wait for /healthz (default: %(default)s)")
    up.set_defaults(func=_up)
    down = sub.add_parser("down", help="stop what 'shutterlog up' started")
    down.set_defaults(func=_down)


def _run(args: argparse.Namespace) -> int:
    from scripts.supervisor import Supervisor

    cfg = config(args)
    return Supervisor(cfg, stack(cfg), say, args.config).run()


def _up(args: argparse.Namespace) -> int:
    from scripts.supervisor import healthy, running_pid

    cfg = config(args)
    if running_pid(cfg.var) is None:
        (cfg.var / "log").mkdir(parents=True, exist_ok=True)
        logfile = cfg.var / "log" / "shutterlog.log"
        argv = [sys.executable, "-m", "scripts.cli"]
        if args.config:
            argv += ["--config", args.config]
        with open(logfile, "ab") as out:
            proc = subprocess.Popen(argv + ["run"], stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        say(f"starting in the background (log: {logfile})")
    else:
        proc = None
        say("already running")
    deadline = time.monotonic() + args.timeout
    while not healthy(cfg):
        if proc is not None and proc.poll() is not None:
            logfile = cfg.var / "log" / "shutterlog.log"
            say(f"it exited with status {proc.returncode}; see {logfile}")
            return 1
        if time.monotonic() > deadline:
            say(f"/healthz did not answer 200 within {args.timeout:.0f}s")
            return 1
        time.sleep(0.25)
    say(f"up: {cfg.http.public_url}")
    return 0


def _down(args: argparse.Namespace) -> int:
    from scripts.stack import terminate
    from scripts.supervisor import STOP_TIMEOUT, running_pid

    cfg = config(args)
    pid = running_pid(cfg.var)
    if pid is not None:
        say(f"stopping shutterlog (pid {pid})")
        terminate(pid, 15, STOP_TIMEOUT * 3)
    stack(cfg).down()  # anything left over from a run that did not stop cleanly
    if os.path.exists(cfg.var / "run" / "shutterlog.pid"):
        (cfg.var / "run" / "shutterlog.pid").unlink()
    say("down")
    return 0
