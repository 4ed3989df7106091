"""``POST /v1/media``: receiving an upload (multipart/form-data), checking it, storing it.

The body arrives spooled by twisted.web (the route's own size limit refuses a larger one with
413 before it is read). The handler parses it with ``multipart``'s streaming parser: the
``photo`` or ``video`` part goes straight into a blob writer (a temporary file in the blob
store, hashed as it is written), the other parts are small text fields. Only once the whole
body is in and valid (type from the bytes, size, pixels, a real MP4, the fields' rules) is
the blob committed; only after it is durable is ``MediaPosted`` appended. A client that
disconnects mid-upload never reaches the handler; a refused upload leaves no file; a crash
between the blob and the event leaves a blob no medium references, which ``shutterlog blobs
gc`` removes after ``media.gc_grace`` seconds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import multipart

from server.api.endpoint import Call
from server.api.envelope import APIError, invalid
from server.domain.media import Details, MediaError, check_details
from server.imaging import Probe, probe, too_large
from server.interfaces import BlobWriter

FILE_PARTS = ("photo", "video")
FIELDS = ("caption", "filter", "lat", "lng", "location_name", "location_id", "share_to")
FIELD_MAX = 8192  # bytes of one text field (a caption is at most 2,200 characters)
CHUNK = 65536
#: Multipart framing on top of the file: headers, boundaries, the text fields.
OVERHEAD = 64 * 1024


@dataclass(frozen=True)
class Upload:
    blob: str
    probe: Probe
    details: Details


def media_error(e: MediaError) -> APIError:
    return APIError(e.code, e.error_type, str(e))


def receive(call: Call, accept: Callable[[Details], None] | None = None) -> Upload:
    """Parse, check and store an upload; APIError (nothing stored) if anything is wrong,
    ``accept(details)`` included (checks that need the store, made before the blob is
    committed)."""
    kind, options = multipart.parse_options_header(call.raw.content_type)
    if kind != "multipart/form-data" or not options.get("boundary"):
        raise APIError(415, "APIInvalidParametersError",
                       "send the upload as multipart/form-data with a photo or video part")
    cfg = call.ctx.config.media
    limit = max(cfg.photo_max_bytes, cfg.video_max_bytes)
    fields: dict[str, str] = {}
    writer: BlobWriter | None = None
    current: str | None = None
    file_part = ""
    text = bytearray()
    try:
        with multipart.PushMultipartParser(options["boundary"], max_segment_count=16) as parser:
            while not parser.closed:
                chunk = call.raw.upload.read(CHUNK) if call.raw.upload else b""
                for event in parser.parse(chunk):
                    if isinstance(event, multipart.MultipartSegment):
                        current = event.name
                        if current in FILE_PARTS:
                            if writer is not None:
                                raise invalid("send one photo or one video")
                            writer = call.ctx.blobs.writer()
                            file_part = current
                        elif current not in FIELDS and current != "access_token":
                            raise invalid(f"unknown field {current!r}")
                        text.clear()
                    elif event is None:
                        if current not in FILE_PARTS and current is not None:
                            fields[current] = _decode(current, bytes(text))
                        current = None
                    elif current in FILE_PARTS:
                        assert writer is not None
                        writer.write(event)
                        if writer.size > limit:
                            raise too_large("file", limit)
                    else:
                        text += event
                        if len(text) > FIELD_MAX:
                            raise invalid(f"{current} is too long")
                if not chunk:
                    break
        if writer is None:
            raise invalid("photo or video is required (a multipart file part)")
        found = probe(writer.file, writer.size, cfg)
        if (found.type == "video") != (file_part == "video"):
            raise invalid(f"the {file_part} part holds a {found.type}")
        details = check_details(fields)
        if accept is not None:
            accept(details)
        name = writer.commit(found.ext)
        writer = None
        return Upload(name, found, details)
    except MediaError as e:
        raise media_error(e) from None
    except multipart.MultipartError as e:
        raise invalid(f"the multipart body is malformed: {e}") from None
    finally:
        if writer is not None:
            writer.discard()


def _decode(name: str, raw: bytes) -> str:
    try:
        value = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise invalid(f"{name} is not valid UTF-8") from None
    if "\x00" in value:
        raise invalid(f"{name} must not contain NUL characters")
    return value
