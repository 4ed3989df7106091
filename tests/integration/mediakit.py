"""Helpers for media tests: pictures and videos made on the spot, uploads, and driving every
consumer of this feature to the head of the log."""

from __future__ import annotations

import io
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import httpx
from PIL import Image

from scripts.seed import ready_medium
from tests.drive import Driver
from tests.integration.apiclient import Api
from tests.integration.conftest import Env

#: Every consumer media, feeds and the graph need, in an order where each one's input exists.
CONSUMERS = ("followers", "blocks", "media_render", "fanout", "tags", "activity", "counters",
             "liked", "geo_index", "realtime")
_drivers: dict[tuple[str, ...], Driver] = {}


def picture(width: int = 800, height: int = 600, fmt: str = "JPEG",
            color: tuple[int, int, int] = (200, 30, 30), orientation: int | None = None
            ) -> bytes:
    """An image of ``fmt``; a JPEG may carry an EXIF orientation and a comment to strip."""
    img = Image.new("RGB", (width, height), color)
    img.paste((20, 20, 220), (0, 0, width // 4, height // 4))  # a corner to find after crops
    buffer = io.BytesIO()
    extra: dict[str, Any] = {}
    if fmt == "JPEG":
        exif = Image.Exif()
        exif[0x010E] = "secret description"
        if orientation:
            exif[0x0112] = orientation
        extra["exif"] = exif.tobytes()
    img.save(buffer, fmt, **extra)
    return buffer.getvalue()


def video(width: int = 96, height: int = 64, seconds: float = 0.4,
          faststart: bool = False) -> bytes:
    """A tiny MP4 (H.264) made by ffmpeg's test source (``faststart``: its index first, so
    that a file cut short keeps it)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "v.mp4"
        subprocess.run(
            ["ffmpeg", "-v", "error", "-nostdin", "-f", "lavfi", "-i",
             f"testsrc=size={width}x{height}:rate=10:duration={seconds}", "-c:v", "libx264",
             "-pix_fmt", "yuv420p", "-preset", "ultrafast",
             *(["-movflags", "+faststart"] if faststart else []), str(out)], check=True)
        return out.read_bytes()


def upload(api: Api, token: str, data: bytes, part: str = "photo",
           filename: str = "upload.bin", **fields: str) -> httpx.Response:
    return api.http.post("/v1/media", files={part: (filename, data)}, data=fields,
                         headers={"Authorization": f"Bearer {token}"}, timeout=60)


def settle(env: Env) -> int:
    """Drive every consumer to the head (checkpoints kept per world, as the workers')."""
    key = tuple(env.dbnames)
    if key not in _drivers:
        _drivers[key] = Driver(env)
    driver = _drivers[key]
    return driver.drive(*CONSUMERS)


def post(api: Api, token: str, caption: str = "", data: bytes | None = None,
         **fields: str) -> str:
    """Upload a picture, render it; returns the medium's id."""
    r = upload(api, token, data or picture(), caption=caption, **fields)
    assert r.status_code == 200, r.text
    settle(api.env)
    return str(r.json()["data"]["id"])


def media_of(r: httpx.Response) -> list[str]:
    assert r.status_code == 200, r.text
    return [m["id"] for m in r.json()["data"]]



def post_direct(env: Env, owner: int, caption: str = "") -> int:
    """A ready medium appended straight to the log (for tests of feeds, not of uploads)."""
    return ready_medium(env.store, env.router, owner, caption)
