"""The local APNs and FCM servers, and providers pointed at them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from plugins.push.apns import ApnsProvider
from plugins.push.fcm import FcmProvider
from tests.push_helpers import PushWorld, push_world


@pytest.fixture
def world(tmp_path: Path) -> Iterator[PushWorld]:
    """Both local services running, sharing one hand-moved clock."""
    with push_world(tmp_path) as w:
        yield w


@pytest.fixture
def apns(world: PushWorld) -> Iterator[ApnsProvider]:
    """The APNs provider as configured for the local APNs, on the shared clock."""
    provider = ApnsProvider.from_config(world.config().push, clock=world.clock)
    yield provider
    provider.close()


@pytest.fixture
def fcm(world: PushWorld) -> Iterator[FcmProvider]:
    """The FCM provider as configured for the local FCM, on the shared clock."""
    provider = FcmProvider.from_config(world.config().push, clock=world.clock)
    yield provider
    provider.close()
