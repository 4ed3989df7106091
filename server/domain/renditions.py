"""Rendition geometry: the v1 API's square sizes and the center crop. Pure: no I/O.

Images: ``thumbnail`` 150, ``low_resolution`` 320, ``standard_resolution`` 640, each a
centered square crop of the (orientation-corrected) original scaled down, never up. Video:
a cover frame rendered as the images, plus ``low_resolution`` 480 and
``standard_resolution`` 640 MP4s.
"""

from __future__ import annotations

IMAGE_SIZES = {"thumbnail": 150, "low_resolution": 320, "standard_resolution": 640}
VIDEO_SIZES = {"low_resolution": 480, "standard_resolution": 640}

#: EXIF orientation values that swap width and height (rotations by 90 or 270 degrees).
_TRANSPOSED = {5, 6, 7, 8}


def oriented_size(width: int, height: int, orientation: int | None) -> tuple[int, int]:
    """The size an image shows at once its EXIF orientation is applied."""
    return (height, width) if orientation in _TRANSPOSED else (width, height)


def center_square(width: int, height: int) -> tuple[int, int, int, int]:
    """The largest centered square of a width x height picture: (left, top, right, bottom)."""
    side = min(width, height)
    left = (width - side) // 2
    top = (height - side) // 2
    return left, top, left + side, top + side


def square_side(width: int, height: int, target: int) -> int:
    """The side of a rendition of ``target`` pixels made from a width x height picture: the
    target, or the picture's shorter side when smaller (renditions never upscale)."""
    return min(target, width, height)


def even(n: int) -> int:
    """``n`` rounded down to an even number of pixels (H.264 with 4:2:0 needs even sides)."""
    return max(2, n - n % 2)
