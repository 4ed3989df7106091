"""The ``media_render`` consumer: renditions of every uploaded medium, then ``MediaRendered``.

Images: thumbnail 150, low_resolution 320, standard_resolution 640 (square center crops, EXIF
orientation applied, metadata stripped). Videos: a cover frame rendered as those images, and
480 and 640 MP4s (ffmpeg). Renditions are blobs (content-addressed, so rendering again
stores nothing new); the ``MediaRendered`` append carries the idempotency key
``render:{posted event id}``, so a batch applied again appends nothing. A medium deleted
before its turn is skipped.

Declared ``side_effect``: rendering is expensive and its result is already in the log as
``MediaRendered``, so a replay of projections never runs it again. Policy SKIP: a medium that
cannot be rendered (after the retries) is parked in the dead letters and stays
``processing``, visible to its owner only, without holding up the shard's other media.
"""

from __future__ import annotations

import logging

from plugins.blobs import open_store
from server.domain.ids import shard_of
from server.domain.log import NewEvent, RecordedEvent
from server.domain.media import MediaPosted, MediaRendered, State, media_stream
from server.imaging import render_image, render_video
from server.interfaces import IBlobStore
from server.store import media
from workers.consumers import OnFailure, consumer
from workers.context import WorkerContext

log = logging.getLogger(__name__)


@consumer("media_render", "MediaPosted", batch_size=8, side_effect=True,
          on_failure=OnFailure.SKIP)
def media_render(ctx: WorkerContext, events: list[RecordedEvent]) -> None:
    blobs = open_store(ctx.config)
    states = media.tagged(ctx.router, [e.data.media_id for e in events])  # type: ignore
    for e in events:
        data = e.data
        assert isinstance(data, MediaPosted)
        found = states.get(data.media_id)
        if found is None or found.state is not State.PROCESSING:
            continue  # deleted meanwhile, or rendered by an earlier run of this batch
        images, videos = renditions(ctx, blobs, data)
        rendered = MediaRendered(media_id=data.media_id, owner=data.owner, images=images,
                                 videos=videos)
        ctx.store.append(shard_of(data.media_id), media_stream(data.media_id),
                         [NewEvent(rendered, actor=data.owner)],
                         idempotency_key=f"render:{e.id}")
        log.info("media_render: %s %d rendered", data.type, data.media_id)


def renditions(ctx: WorkerContext, blobs: IBlobStore, data: MediaPosted
               ) -> tuple[dict[str, str], dict[str, str]]:
    """Make and store the renditions: (images, videos) by v1 name -> blob name."""
    source = blobs.path(data.blob)
    if source is None:
        raise FileNotFoundError(f"blob {data.blob} of medium {data.media_id} is missing")
    if data.type == "image":
        return {name: blobs.put(jpeg, "jpg") for name, jpeg in render_image(source).items()}, {}
    covers, files, work = render_video(source, ctx.config.media, data.width, data.height)
    try:
        images = {name: blobs.put(jpeg, "jpg") for name, jpeg in covers.items()}
        videos = {name: blobs.put(path.read_bytes(), "mp4") for name, path in files.items()}
    finally:
        work.cleanup()
    return images, videos
