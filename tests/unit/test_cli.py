"""The command line: --help everywhere, config show, clear configuration errors."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from scripts.cli import command_of, main, parser
from tests.helpers import REPO, scrubbed_env


def all_commands(p: argparse.ArgumentParser, prefix: list[str]) -> list[list[str]]:
    found = [prefix]
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += all_commands(sub, prefix + [name])
    return found


@pytest.mark.parametrize("argv", all_commands(parser(), []), ids=" ".join)
def test_every_command_has_help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """``--help`` works for every command and subcommand and describes it."""
    with pytest.raises(SystemExit) as done:
        main(argv + ["--help"])
    assert done.value.code == 0
    assert "usage: shutterlog" in capsys.readouterr().out


def test_config_show_json(monkeypatch, tmp_path, capsys) -> None:
    """config show --json prints the effective values with secrets masked."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SHUTTERLOG_VAR", str(tmp_path / "var"))
    monkeypatch.setenv("SHUTTERLOG_HTTP_PORT", "9999")
    monkeypatch.setenv("SHUTTERLOG_SECRETS_KEY", "do-not-print")
    assert main(["config", "show", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["http.port"] == 9999 and shown["secrets.key"] == "***"


def test_invalid_configuration_exits_2_naming_the_key(monkeypatch, tmp_path, capsys) -> None:
    """A bad value ends the command with status 2 and the key in the message."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SHUTTERLOG_VAR", str(tmp_path / "var"))
    monkeypatch.setenv("SHUTTERLOG_SHARDS_COUNT", "lots")
    assert main(["config", "show"]) == 2
    assert "shards.count (from SHUTTERLOG_SHARDS_COUNT)" in capsys.readouterr().err


def test_secrets_genkey_prints_a_usable_key(capsys) -> None:
    """secrets genkey prints a new Fernet key that the configuration accepts."""
    from server.crypto import check_key

    assert main(["secrets", "genkey"]) == 0
    first = capsys.readouterr().out.strip()
    assert main(["secrets", "genkey"]) == 0
    check_key(first)
    assert first != capsys.readouterr().out.strip()


def test_the_command_is_found_past_the_config_option() -> None:
    """``shutterlog --config F workers``: the command is ``workers`` (so it runs under
    gevent's patching), wherever the option and however it is spelled."""
    assert command_of(["--config", "f.toml", "workers"]) == "workers"
    assert command_of(["-c", "relay", "relay"]) == "relay"  # a file may be named as a command
    assert command_of(["workers", "--help"]) == "workers"
    assert command_of(["--config=f.toml", "relay"]) == "relay"
    assert command_of(["--config", "f.toml"]) is None and command_of([]) is None


@pytest.mark.parametrize("command", ["workers", "relay"])
def test_green_commands_are_patched_with_a_config_file(tmp_path: Path, command: str) -> None:
    """The relay and the workers given a configuration file still run under gevent's
    patching (sockets cooperative), as without one."""
    probe = (
        "import sys\n"
        f"import scripts.commands.{command} as m\n"
        "def probe(args):\n"
        "    import gevent.monkey\n"
        "    print('PATCHED' if gevent.monkey.is_module_patched('socket') else 'PLAIN')\n"
        "    return 0\n"
        f"m._{command} = probe\n"
        "from scripts.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    cfg = tmp_path / "shutterlog.toml"
    cfg.write_text('[log]\nlevel = "info"\n')
    done = subprocess.run([sys.executable, "-c", probe, "--config", str(cfg), command],
                          cwd=REPO, env=scrubbed_env({}), capture_output=True, text=True,
                          timeout=60)
    assert (done.returncode, done.stdout.strip()) == (0, "PATCHED"), done.stderr[-2000:]
