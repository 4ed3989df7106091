"""Secrets of the push providers (signing keys, JWTs, access tokens) never reach a log."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from plugins.push import close_all, push_providers
from plugins.push.apns import ApnsProvider
from plugins.push.fcm import FcmProvider
from server.config import ConfigError
from server.domain.push import Notification, notification_id
from tests.push_helpers import apns_key, push_world, service_account

IOS = "b2" * 32
ANDROID = "fcm-registration-token-" + "y" * 40


def key_lines(path: Path) -> list[str]:
    """The base64 lines of every PEM private key in ``path`` (JSON escapes undone)."""
    text = path.read_text().replace("\\n", "\n")
    return [line for line in text.splitlines() if len(line) > 40 and "-----" not in line]


def test_no_key_jwt_or_access_token_is_ever_logged(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Through deliveries, renewals, rejections, refusals and configuration errors, with
    every logger at DEBUG, no private key line, JWT, assertion or access token is logged."""
    caplog.set_level(logging.DEBUG)
    with push_world(tmp_path) as world:
        providers = push_providers(world.config(), clock=world.clock)
        ios = Notification(IOS, "ios", notification_id(1, IOS), title="t", body="b")
        android = Notification(ANDROID, "android", notification_id(1, ANDROID), title="t")
        world.apns.respond(IOS, 403, "ExpiredProviderToken")
        world.fcm.respond(ANDROID, "UNREGISTERED")
        results = [providers["ios"].send(ios), providers["ios"].send(ios),
                   providers["android"].send(android)]
        world.fcm.revoke_tokens()
        results.append(providers["android"].send(android))
        world.apns.respond(IOS, 429, "TooManyRequests")
        results.append(providers["ios"].send(ios))
        other_key, _ = apns_key(tmp_path, "Other.p8")
        other_sa, _ = service_account(tmp_path, world.fcm.token_uri, "other.json")
        others = push_providers(world.config(apns_key_file=str(other_key),
                                             fcm_credentials_file=str(other_sa)),
                                clock=world.clock)
        results += [others["ios"].send(ios), others["android"].send(android)]
        with pytest.raises(ConfigError):
            push_providers(world.config(fcm_credentials_file=str(other_key)))
        with pytest.raises(ConfigError):
            push_providers(world.config(apns_key_file=str(other_sa)))
        secrets = (
            key_lines(world.apns_key_file) + key_lines(other_key)
            + key_lines(world.fcm_key_file) + key_lines(other_sa)
            + [r.jwt for r in world.apns.received] + world.fcm.grants + world.fcm.assertions
        )
        reprs = [repr(p) for p in (*providers.values(), *others.values())]
        close_all(providers)
        close_all(others)
    assert len(world.apns.received) >= 4 and len(world.fcm.grants) >= 2
    assert len(set(r.jwt for r in world.apns.received)) >= 3  # renewed, and the other key's
    text = caplog.text + "".join(map(repr, results)) + "".join(reprs)
    assert "made a new APNs provider token" in text  # the logs were captured
    for secret in secrets:
        assert secret and secret not in text


def test_providers_show_no_secret_in_their_repr(tmp_path: Path) -> None:
    """repr() of the providers names the service and the key id, not the key."""
    key_file, _ = apns_key(tmp_path)
    sa_file, _ = service_account(tmp_path, "https://oauth2.example/token")
    with push_world(tmp_path / "w") as world:
        apns = ApnsProvider.from_config(world.config(apns_key_file=str(key_file)).push)
        fcm = FcmProvider.from_config(world.config(fcm_credentials_file=str(sa_file)).push)
        text = repr(apns) + repr(fcm)
        apns.close()
        fcm.close()
    assert "KEY1234567" in text and "push@shutterlog-test" in text
    for line in key_lines(key_file) + key_lines(sa_file):
        assert line not in text
