"""Checking uploaded pictures and videos, and making their renditions: Pillow for images,
Debian's ffprobe and ffmpeg for MP4.

``probe`` decides what an upload is from its bytes (magic numbers first, then Pillow or
ffprobe must read it as that type), enforcing the size, pixel and duration limits with
``MediaError``s that say what is wrong. ``render_image`` and ``render_video`` make the v1
renditions: square center crops with EXIF orientation applied and metadata stripped.
Synchronous: the service calls ``probe`` in its threadpool, the ``media_render`` consumer
calls the renderers under gevent (subprocesses are cooperative there).
"""

from __future__ import annotations

import io
import json
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from server.config import MediaConfig
from server.domain.media import EXTENSIONS, MediaError, sniff
from server.domain.renditions import (
    IMAGE_SIZES,
    VIDEO_SIZES,
    center_square,
    even,
    oriented_size,
    square_side,
)

#: What Pillow may call each kind: a JPEG with a second picture in an MPF segment (phones'
#: HDR gain maps and depth maps) opens as MPO; its first picture is the photo.
_PIL_FORMATS = {"jpeg": ("JPEG", "MPO"), "png": ("PNG",), "webp": ("WEBP",)}
#: Seconds a probe or a rendition may take before it is abandoned.
PROBE_TIMEOUT = 30
RENDER_TIMEOUT = 300


@dataclass(frozen=True)
class Probe:
    """What an upload is: ``type`` image or video, ``format`` (jpeg, png, webp, mp4)."""

    type: str
    format: str
    width: int
    height: int
    duration_ms: int = 0

    @property
    def ext(self) -> str:
        return EXTENSIONS[self.format]


def too_large(kind: str, limit: int) -> MediaError:
    return MediaError(f"the {kind} is larger than {limit:,} bytes", "APIMediaTooLargeError",
                      413)


def probe(path: Path, size: int, cfg: MediaConfig) -> Probe:
    """Check the file at ``path`` (``size`` bytes) and say what it is; MediaError if it is
    not an acceptable JPEG, PNG, WebP or MP4."""
    with open(path, "rb") as f:
        head = f.read(16)
    kind = sniff(head)
    if kind is None:
        raise MediaError("the file is not a JPEG, PNG, WebP or MP4 (decided from its bytes)",
                         "APIInvalidMediaError", 415)
    if kind == "mp4":
        if size > cfg.video_max_bytes:
            raise too_large("video", cfg.video_max_bytes)
        return probe_video(path, cfg)
    if size > cfg.photo_max_bytes:
        raise too_large("photo", cfg.photo_max_bytes)
    return probe_image(path, kind, cfg.max_pixels)


def probe_image(path: Path, kind: str, max_pixels: int) -> Probe:
    """Open the picture, check its pixel count BEFORE decoding (a decompression bomb is
    refused without being expanded), then decode it whole (a truncated file fails)."""
    try:
        with Image.open(path) as img:
            if img.format not in _PIL_FORMATS[kind]:
                raise MediaError(f"the file starts like {kind} but reads as {img.format}",
                                 "APIInvalidMediaError", 415)
            width, height = img.size
            if width * height > max_pixels:
                raise MediaError(
                    f"the picture has {width * height:,} pixels ({width}x{height}); at most "
                    f"{max_pixels:,} are accepted", "APIMediaTooLargeError", 413)
            if width < 1 or height < 1:
                raise MediaError("the picture is empty", "APIInvalidMediaError", 415)
            img.draft("RGB", (max(1, width // 8), max(1, height // 8)))  # JPEG: decode cheap
            img.load()
            orientation = img.getexif().get(0x0112)
    except MediaError:
        raise
    except Image.DecompressionBombError:
        raise MediaError("the picture has too many pixels", "APIMediaTooLargeError", 413) \
            from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise MediaError(f"the {kind} file is unreadable or truncated ({e})",
                         "APIInvalidMediaError", 415) from None
    shown = oriented_size(width, height, orientation if isinstance(orientation, int) else None)
    return Probe("image", kind, *shown)


def probe_video(path: Path, cfg: MediaConfig) -> Probe:
    """ffprobe must read the file as an MP4 container with a video stream."""
    try:
        out = subprocess.run(
            [cfg.ffprobe, "-v", "error", "-print_format", "json", "-show_format",
             "-show_streams", str(path)],
            capture_output=True, timeout=PROBE_TIMEOUT, check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise MediaError(f"the video could not be checked ({e})", "APIInvalidMediaError",
                         415) from None
    info = json.loads(out.stdout or b"{}") if out.returncode == 0 else {}
    fmt = info.get("format", {})
    video = [s for s in info.get("streams", []) if s.get("codec_type") == "video"]
    if "mp4" not in fmt.get("format_name", "").split(",") or not video:
        raise MediaError("the file is not a readable MP4 video", "APIInvalidMediaError", 415)
    width, height = int(video[0].get("width") or 0), int(video[0].get("height") or 0)
    try:
        duration = float(fmt.get("duration") or video[0].get("duration") or 0)
    except ValueError:
        duration = 0.0
    if width < 1 or height < 1 or duration <= 0:
        raise MediaError("the MP4 has no playable video", "APIInvalidMediaError", 415)
    if width * height > cfg.video_max_pixels:
        raise MediaError(
            f"the video's frames have {width * height:,} pixels ({width}x{height}); at most "
            f"{cfg.video_max_pixels:,} are accepted", "APIMediaTooLargeError", 413)
    if duration > cfg.video_max_seconds:
        raise MediaError(f"the video lasts {duration:.1f} s; at most {cfg.video_max_seconds} s "
                         "are accepted", "APIMediaTooLargeError", 413)
    _check_packets(path, cfg)
    return Probe("video", "mp4", width, height, round(duration * 1000))


def _check_packets(path: Path, cfg: MediaConfig) -> None:
    """Read every packet of the video stream without decoding it (``-c copy`` into the null
    muxer): a file cut short fails here, where ffprobe, reading only the container's index,
    would pass it and every rendition would then fail."""
    try:
        out = subprocess.run(
            [cfg.ffmpeg, "-v", "error", "-nostdin", "-xerror", "-i", str(path), "-map", "0:v:0",
             "-c", "copy", "-f", "null", "-"],
            capture_output=True, timeout=PROBE_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise MediaError(f"the video could not be checked ({e})", "APIInvalidMediaError",
                         415) from None
    if out.returncode != 0:
        raise MediaError("the MP4 is truncated or corrupt (its video packets do not read)",
                         "APIInvalidMediaError", 415)


def render_image(source: Path | bytes) -> dict[str, bytes]:
    """JPEG renditions by v1 name: the oriented picture's center square, scaled down to each
    size, with no metadata (EXIF, ICC, comments are not copied)."""
    raw = io.BytesIO(source) if isinstance(source, bytes) else source
    with Image.open(raw) as img:
        oriented = ImageOps.exif_transpose(img)
        picture = oriented.convert("RGB")
    square = picture.crop(center_square(*picture.size))
    out: dict[str, bytes] = {}
    for name, target in IMAGE_SIZES.items():
        side = square_side(*square.size, target)
        buffer = io.BytesIO()
        scaled = square.resize((side, side), Image.Resampling.LANCZOS)
        scaled.info.clear()  # the JPEG writer would copy a comment (COM, PNG text) from it
        scaled.save(buffer, "JPEG", quality=85, optimize=True)
        out[name] = buffer.getvalue()
    return out


def render_video(source: Path, cfg: MediaConfig, width: int, height: int
                 ) -> tuple[dict[str, bytes], dict[str, Path], tempfile.TemporaryDirectory[str]]:
    """A cover frame's image renditions, and MP4 renditions by v1 name (files in a
    temporary directory the caller cleans up)."""
    work = tempfile.TemporaryDirectory(prefix="shutterlog-render-")
    base = Path(work.name)
    try:
        cover = base / "cover.png"
        _ffmpeg(cfg, ["-i", str(source), "-frames:v", "1", "-map_metadata", "-1", str(cover)])
        images = render_image(cover)
        videos: dict[str, Path] = {}
        for name, target in VIDEO_SIZES.items():
            side = even(square_side(width, height, target))
            out = base / f"{name}.mp4"
            _ffmpeg(cfg, [
                "-i", str(source), "-map_metadata", "-1",
                "-vf", f"crop='min(iw,ih)':'min(iw,ih)',scale={side}:{side}",
                "-c:v", "libx264", "-preset", "veryfast", "-crf", "28", "-pix_fmt", "yuv420p",
                "-c:a", "aac", "-b:a", "96k", "-movflags", "+faststart", str(out)])
            videos[name] = out
        return images, videos, work
    except BaseException:
        work.cleanup()
        raise


def _ffmpeg(cfg: MediaConfig, args: list[str]) -> None:
    out = subprocess.run([cfg.ffmpeg, "-v", "error", "-nostdin", "-y", *args],
                         capture_output=True, timeout=RENDER_TIMEOUT, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"ffmpeg failed ({out.returncode}): "
                           f"{out.stderr.decode(errors='replace')[-500:]}")
