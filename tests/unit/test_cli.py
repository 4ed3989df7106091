"""The command line: --help everywhere, config show, clear configuration errors."""

from __future__ import annotations

import argparse
import json

import pytest

from scripts.cli import main, parser


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
