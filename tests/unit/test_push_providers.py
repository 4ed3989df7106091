"""Push providers without a network: configuration, interfaces, provider-token timing."""

import logging
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from zope.interface.verify import verifyObject

from plugins.push import close_all, push_providers
from plugins.push.apns import ApnsProvider, ProviderToken, load_signing_key
from plugins.push.fcm import FcmProvider
from plugins.push.log import LogProvider
from server.config import ConfigError, load
from server.domain.push import Delivered, Notification, notification_id
from server.interfaces import IPushProvider
from tests.push_helpers import KEY_ID, TEAM_ID, FakeClock, apns_key, service_account


def cfg(tmp_path: Path, **push: str):
    env = {"SHUTTERLOG_VAR": str(tmp_path / "var")}
    env |= {f"SHUTTERLOG_PUSH_{k.upper()}": v for k, v in push.items()}
    return load(env=env, search_default=False)


def apns_settings(tmp_path: Path) -> dict[str, str]:
    key_file, _ = apns_key(tmp_path)
    return {"ios": "apns", "apns_key_file": str(key_file), "apns_key_id": KEY_ID,
            "apns_team_id": TEAM_ID, "apns_topic": "com.example"}


def test_log_provider_is_the_default_for_both_platforms(tmp_path: Path) -> None:
    """With nothing configured, both platforms share one log-only provider."""
    providers = push_providers(cfg(tmp_path))
    assert isinstance(providers["ios"], LogProvider)
    assert providers["ios"] is providers["android"]


@pytest.mark.parametrize("key, value, message", [
    ("ios", "pyapns2", "must be log, apns or fcm"),
    ("android", "apns", "APNs serves only Apple devices"),
    ("apns_jwt_lifetime", "600", "1200 to 3600"),
    ("apns_jwt_lifetime", "7200", "1200 to 3600"),
    ("apns_url", "http://api.push.apple.com", "https://"),
    ("timeout", "0", "at least 1"),
])
def test_invalid_push_settings_name_the_key(tmp_path: Path, key: str, value: str,
                                            message: str) -> None:
    """Each invalid push setting stops loading with an error naming the key."""
    with pytest.raises(ConfigError, match=f"push.{key}.*{message}"):
        cfg(tmp_path, **{key: value})


def test_apns_needs_its_settings(tmp_path: Path) -> None:
    """Choosing apns without a key file is an error naming push.apns_key_file."""
    with pytest.raises(ConfigError, match="push.apns_key_file: required"):
        push_providers(cfg(tmp_path, ios="apns"))


def test_a_wrong_key_file_is_refused_without_showing_it(tmp_path: Path) -> None:
    """An RSA key where the P-256 .p8 belongs is refused; the message shows no key bytes."""
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = rsa_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    path = tmp_path / "wrong.p8"
    path.write_bytes(pem)
    with pytest.raises(ConfigError) as e:
        load_signing_key(str(path))
    assert "not an APNs (ES256, P-256) signing key" in str(e.value)
    assert pem.decode().splitlines()[1] not in str(e.value)
    with pytest.raises(ConfigError, match="cannot read"):
        load_signing_key(str(tmp_path / "missing.p8"))


def test_fcm_needs_a_readable_service_account(tmp_path: Path) -> None:
    """A missing or malformed service account file is an error naming the setting."""
    (tmp_path / "bad.json").write_text('{"type": "service_account"}')
    for path in (tmp_path / "missing.json", tmp_path / "bad.json"):
        with pytest.raises(ConfigError, match="push.fcm_credentials_file"):
            push_providers(cfg(tmp_path, android="fcm", fcm_credentials_file=str(path)))


def test_every_provider_provides_the_interface(tmp_path: Path) -> None:
    """LogProvider, ApnsProvider and FcmProvider are IPushProviders (verifyObject)."""
    sa_file, _ = service_account(tmp_path, "https://oauth2.example/token")
    providers = push_providers(cfg(tmp_path, **apns_settings(tmp_path), android="fcm",
                                   fcm_credentials_file=str(sa_file)))
    assert isinstance(providers["ios"], ApnsProvider)
    assert isinstance(providers["android"], FcmProvider)
    assert providers["android"].project == "shutterlog-test"
    for provider in (*providers.values(), LogProvider()):
        assert verifyObject(IPushProvider, provider)
    close_all(providers)


def test_one_fcm_provider_serves_both_platforms(tmp_path: Path) -> None:
    """ios=fcm and android=fcm share one provider, so one connection."""
    sa_file, _ = service_account(tmp_path, "https://oauth2.example/token")
    providers = push_providers(cfg(tmp_path, ios="fcm", android="fcm",
                                   fcm_credentials_file=str(sa_file)))
    assert providers["ios"] is providers["android"]
    close_all(providers)


def test_log_provider_logs_a_summary_and_delivers(caplog: pytest.LogCaptureFixture) -> None:
    """The log-only provider answers Delivered and logs the title, not the whole token."""
    token = "ab" * 32
    n = Notification(token, "ios", notification_id(1, token), title="New like", body="secret")
    with caplog.at_level(logging.INFO):
        assert LogProvider().send(n) == Delivered(f"log:{n.id}")
    assert "New like" in caplog.text and token not in caplog.text


def test_apns_refuses_android_notifications(tmp_path: Path) -> None:
    """Sending an Android notification through APNs is a programming error: ValueError."""
    provider = push_providers(cfg(tmp_path, **apns_settings(tmp_path)))["ios"]
    token = "x" * 40
    with pytest.raises(ValueError, match="APNs cannot send"):
        provider.send(Notification(token, "android", notification_id(1, token), title="t"))
    provider.close()


def test_provider_token_lives_its_lifetime_then_is_replaced(tmp_path: Path) -> None:
    """The JWT is reused until its lifetime has passed, then made anew with the new iat."""
    key_file, public = apns_key(tmp_path)
    clock = FakeClock(1_700_000_000)
    token = ProviderToken(load_signing_key(str(key_file)), KEY_ID, TEAM_ID, 1500, clock)
    first = token.current()
    assert jwt.get_unverified_header(first)["kid"] == KEY_ID
    assert jwt.decode(first, public, algorithms=["ES256"]) == {"iss": TEAM_ID,
                                                               "iat": 1_700_000_000}
    clock.advance(1499)
    assert token.current() == first and token.minted == 1
    clock.advance(1)
    second = token.current()
    assert second != first and token.minted == 2
    assert jwt.decode(second, public, algorithms=["ES256"])["iat"] == 1_700_001_500


def test_a_rejected_token_is_replaced_once_for_all_senders(tmp_path: Path) -> None:
    """Many senders reporting the same rejected JWT cause one new token, not one each."""
    key_file, _ = apns_key(tmp_path)
    token = ProviderToken(load_signing_key(str(key_file)), KEY_ID, TEAM_ID, 3000, FakeClock())
    rejected = token.current()
    fresh = {token.replace(rejected) for _ in range(5)}
    assert len(fresh) == 1 and rejected not in fresh and token.minted == 2


def test_provider_token_lifetime_outside_apples_window_is_refused(tmp_path: Path) -> None:
    """A lifetime under 20 minutes or over 60 is refused."""
    key = load_signing_key(str(apns_key(tmp_path)[0]))
    for lifetime in (60, 1199, 3601):
        with pytest.raises(ValueError, match="1200-3600"):
            ProviderToken(key, KEY_ID, TEAM_ID, lifetime)
