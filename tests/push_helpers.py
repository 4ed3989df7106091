"""What the push tests share: a clock to move by hand, keys, and the two local services."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from scripts.fakes.apns import FakeApns
from scripts.fakes.fcm import FakeFcm
from scripts.fakes.tls import TlsFiles, make_tls
from server.config import Config, load
from server.domain.push import Notification, Platform, notification_id

TEAM_ID = "TEAM123456"
KEY_ID = "KEY1234567"
TOPIC = "com.example.shutterlog"
PROJECT = "shutterlog-test"
CLIENT_EMAIL = "push@shutterlog-test.iam.gserviceaccount.com"
SA_KEY_ID = "0123456789abcdef0123456789abcdef01234567"


def notification(token: str, platform: Platform, source: object = 1,
                 **fields: Any) -> Notification:
    """A notification about ``source`` to ``token`` with a default title and body."""
    return Notification(token, platform, notification_id(str(source), token),
                        **({"title": "shutterlog", "body": "alice liked your photo"} | fields))


class FakeClock:
    """A clock tests move by hand (shared by a provider and a fake server); with ``wall``
    it runs with the real time (for servers that processes of their own talk to), moved
    by hand on top of it."""

    def __init__(self, start: float | None = None, wall: bool = False) -> None:
        self.wall = wall
        self.now = 0.0 if wall else time.time() if start is None else start

    def __call__(self) -> float:
        return time.time() + self.now if self.wall else self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def _pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _public_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


def apns_key(directory: Path, name: str = "AuthKey.p8") -> tuple[Path, bytes]:
    """A .p8 signing key written to ``directory``: (its path, its public key PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    path = directory / name
    path.write_bytes(_pem(key))
    return path, _public_pem(key)


def service_account(directory: Path, token_uri: str,
                    name: str = "service-account.json") -> tuple[Path, bytes]:
    """A service account key file as Google issues them: (its path, its public key PEM)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = directory / name
    path.write_text(json.dumps({
        "type": "service_account", "project_id": PROJECT, "private_key_id": SA_KEY_ID,
        "private_key": _pem(key).decode(), "client_email": CLIENT_EMAIL,
        "client_id": "123456789", "token_uri": token_uri,
    }))
    return path, _public_pem(key)


@dataclass
class PushWorld:
    """Local APNs and FCM with their keys, and the settings that point a provider at them."""

    tmp: Path
    clock: FakeClock
    tls: TlsFiles
    apns: FakeApns
    fcm: FakeFcm
    apns_key_file: Path
    fcm_key_file: Path

    def env(self, **extra: str) -> dict[str, str]:
        """SHUTTERLOG_* settings for providers talking to these servers."""
        return {
            "SHUTTERLOG_VAR": str(self.tmp / "var"),
            "SHUTTERLOG_PUSH_IOS": "apns",
            "SHUTTERLOG_PUSH_ANDROID": "fcm",
            "SHUTTERLOG_PUSH_CA_FILE": str(self.tls.ca),
            "SHUTTERLOG_PUSH_TIMEOUT": "5",
            "SHUTTERLOG_PUSH_APNS_URL": self.apns.url,
            "SHUTTERLOG_PUSH_APNS_KEY_FILE": str(self.apns_key_file),
            "SHUTTERLOG_PUSH_APNS_KEY_ID": KEY_ID,
            "SHUTTERLOG_PUSH_APNS_TEAM_ID": TEAM_ID,
            "SHUTTERLOG_PUSH_APNS_TOPIC": TOPIC,
            "SHUTTERLOG_PUSH_FCM_CREDENTIALS_FILE": str(self.fcm_key_file),
            "SHUTTERLOG_PUSH_FCM_URL": self.fcm.url,
            "SHUTTERLOG_PUSH_FCM_TOKEN_URI": self.fcm.token_uri,
        } | {f"SHUTTERLOG_PUSH_{k.upper()}": v for k, v in extra.items()}

    def config(self, **extra: str) -> Config:
        return load(env=self.env(**extra), search_default=False)


@contextlib.contextmanager
def push_world(tmp: Path, wall: bool = False) -> Iterator[PushWorld]:
    """Both local services running (in threads), sharing one hand-moved clock (running with
    the real time when ``wall``: for providers in other processes)."""
    clock = FakeClock(wall=wall)
    tls = make_tls(tmp / "tls")
    key_file, apns_public = apns_key(tmp)
    apns = FakeApns(tls, TEAM_ID, KEY_ID, apns_public, frozenset({TOPIC}), clock=clock)
    fcm = FakeFcm(tls, PROJECT, CLIENT_EMAIL, SA_KEY_ID, b"", clock=clock)
    with apns.running(), fcm.running():
        sa_file, sa_public = service_account(tmp, fcm.token_uri)
        fcm.public_key = sa_public
        yield PushWorld(tmp, clock, tls, apns, fcm, key_file, sa_file)
