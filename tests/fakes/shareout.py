"""What the share-out target tests share: a photo, a request, a client allowed to loopback,
and the check that no secret reached the logs."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import httpx
from PIL import Image

from server.domain.outbound import OutboundPolicy
from server.domain.shareout import Media, ShareRequest
from server.outbound import safe_client

#: The fake services listen on loopback, which the operator allow-list must let through.
LOOPBACK = OutboundPolicy.parse(["127.0.0.1"])
PERMALINK = "https://shutterlog.example/p/4242"


def jpeg(path: Path, size: tuple[int, int] = (64, 48)) -> Path:
    """A real JPEG file (services check the type of what they are sent)."""
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 120, 40)).save(buffer, "JPEG")
    path.write_bytes(buffer.getvalue())
    return path


def share_request(
    service: str,
    media_path: Path | None,
    media_url: str = "",
    caption: str = "Sunset over the bay #sunset",
    event_id: int = 777,
) -> ShareRequest:
    return ShareRequest(
        event_id=event_id, medium_id=4242, owner_id=7, service=service, caption=caption,
        permalink=PERMALINK,
        media=Media(media_url or "https://cdn.shutterlog.example/4242_640.jpg", "image/jpeg",
                    str(media_path) if media_path else None),
        alt_text="an orange square",
    )


def client() -> httpx.Client:
    return safe_client(LOOPBACK, timeout=5)


class Sleeps:
    """A stand-in for ``time.sleep`` that records the waits instead of waiting."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def assert_no_secret_logged(records: list[logging.LogRecord], *secrets: str) -> None:
    """No log record, message or argument, mentions any of ``secrets``."""
    assert records, "expected the operations to log something"
    for record in records:
        text = record.getMessage() + repr(record.args) + repr(record.__dict__.get("exc_info"))
        for secret in secrets:
            assert secret not in text, f"secret in log: {record.name}: {record.getMessage()}"
