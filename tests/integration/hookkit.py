"""What the webhook subscription tests share: subscribing an app's receiver
(``tests/fakes/hub.py``) through the API, and reading the subscription created."""

from __future__ import annotations

from typing import Any

import httpx

from tests.fakes.hub import FakeHub
from tests.integration.apiclient import Api


def subscribe(api: Api, app: tuple[str, str], hub: FakeHub, **fields: Any) -> httpx.Response:
    """POST /v1/subscriptions for ``app`` with ``hub`` as the callback (which the service
    verifies by its challenge before creating anything)."""
    form = {"client_id": app[0], "client_secret": app[1], "aspect": "media",
            "callback_url": hub.hook_url, "verify_token": hub.verify_token} | fields
    return api.http.post("/v1/subscriptions", data=form)


def created(r: httpx.Response) -> dict[str, Any]:
    """The subscription a successful POST created."""
    assert r.status_code == 200, r.text
    return dict(r.json()["data"])
