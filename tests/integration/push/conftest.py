"""The local APNs and FCM servers, and providers pointed at them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from plugins.push.apns import ApnsProvider
from plugins.push.fcm import FcmProvider
from tests.helpers import Service
from tests.integration.conftest import Env
from tests.integration.push.flowkit import Flow, running_flow
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


@pytest.fixture(scope="module")
def flow(module_env: Env, service: Service, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[Flow]:
    """The API, a relay and a worker pool sending to local APNs and FCM (one per module)."""
    with running_flow(module_env, service, tmp_path_factory.mktemp("push")) as f:
        yield f
