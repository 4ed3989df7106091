"""The checks and renditions of uploads (server/imaging.py), on files made here."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import pytest
from PIL import Image, PngImagePlugin

from server.config import MediaConfig
from server.domain.media import MediaError
from server.imaging import Probe, probe, render_image
from tests.integration.mediakit import video

CFG = MediaConfig()


def _probe(tmp_path: Path, data: bytes, cfg: MediaConfig = CFG) -> Probe:
    path = tmp_path / "upload"
    path.write_bytes(data)
    return probe(path, len(data), cfg)


def _refused(tmp_path: Path, data: bytes, cfg: MediaConfig = CFG) -> MediaError:
    with pytest.raises(MediaError) as e:
        _probe(tmp_path, data, cfg)
    return e.value


def test_renditions_carry_no_comment() -> None:
    """A JPEG comment (COM segment) or a PNG text chunk is not copied into the renditions,
    which Pillow's JPEG writer would do from the image's ``info``."""
    secret = "home: 48.8584N 2.2945E"
    jpeg = io.BytesIO()
    Image.new("RGB", (300, 200), (200, 30, 30)).save(jpeg, "JPEG", comment=secret.encode())
    text = PngImagePlugin.PngInfo()
    text.add_text("comment", secret)
    png = io.BytesIO()
    Image.new("RGB", (300, 200), (200, 30, 30)).save(png, "PNG", pnginfo=text)
    for source in (jpeg.getvalue(), png.getvalue()):
        for name, out in render_image(source).items():
            assert secret.encode() not in out, name
            with Image.open(io.BytesIO(out)) as img:
                assert "comment" not in img.info, name


def test_a_multi_picture_jpeg_is_a_jpeg(tmp_path: Path) -> None:
    """A JPEG with a second picture in an MPF segment (phones' HDR gain maps), which Pillow
    opens as MPO, is accepted as the JPEG it is."""
    buf = io.BytesIO()
    Image.new("RGB", (300, 200), (200, 30, 30)).save(
        buf, "MPO", save_all=True, append_images=[Image.new("RGB", (300, 200))])
    found = _probe(tmp_path, buf.getvalue())
    assert (found.type, found.format, found.width, found.height) == ("image", "jpeg", 300, 200)


def test_a_truncated_mp4_is_refused(tmp_path: Path) -> None:
    """An MP4 cut short after its index (most samples missing) passes ffprobe, which reads
    only the index; reading its packets refuses it (415), as a truncated picture is."""
    whole = video(160, 120, 2, faststart=True)
    assert _probe(tmp_path, whole).type == "video"
    error = _refused(tmp_path, whole[:len(whole) // 3])
    assert error.code == 415 and "truncated" in str(error)


def test_video_frames_have_a_pixel_limit(tmp_path: Path) -> None:
    """``media.video_max_pixels``: larger frames are refused (413) before anything decodes
    them; a frame at the limit passes."""
    clip = video(320, 240, 0.2)
    error = _refused(tmp_path, clip, dataclasses.replace(CFG, video_max_pixels=320 * 240 - 1))
    assert error.code == 413 and "76,800 pixels" in str(error)
    assert _probe(tmp_path, clip, dataclasses.replace(CFG, video_max_pixels=320 * 240))
