"""Uploads, media objects, renditions, blob URLs, short codes, a user's media, deletion."""

from __future__ import annotations

import hashlib
import io
import socket

from PIL import Image

from server.domain.media import shortcode
from tests.integration.apiclient import Api
from tests.integration.mediakit import picture, post, settle, upload, video

SERVICE_ENV = {"SHUTTERLOG_MEDIA_PHOTO_MAX_BYTES": "300000",
               "SHUTTERLOG_MEDIA_VIDEO_MAX_BYTES": "400000",
               "SHUTTERLOG_MEDIA_MAX_PIXELS": "4000000"}


def blob(api: Api, url: str) -> bytes:
    r = api.http.get(url.removeprefix(api.service.base))
    assert r.status_code == 200, r.text
    return r.content


def test_upload_renders_and_shows_the_v1_media_object(api: Api) -> None:
    """A JPEG upload is processing and seen by its owner only; once rendered it has the v1
    fields, square renditions with the orientation applied and no EXIF, at stable URLs."""
    a, ta = api.user()
    b, tb = api.user()
    r = upload(api, ta, picture(900, 600, orientation=6), filename="x.png",
               caption="Sunset #Beach with @nobody_here", lat="48.85", lng="2.35",
               location_name="Paris")
    assert r.status_code == 200, r.text
    m = r.json()["data"]
    assert m["state"] == "processing" and m["images"] == {} and m["type"] == "image"
    assert api.get(f"/v1/media/{m['id']}", tb).status_code == 404
    settle(api.env)
    got = api.get(f"/v1/media/{m['id']}", tb).json()["data"]
    assert got["state"] == "ready" and got["tags"] == ["beach"]
    assert got["caption"]["text"].startswith("Sunset") and got["caption"]["from"]["id"] == a["id"]
    assert got["location"] == {"latitude": 48.85, "longitude": 2.35, "name": "Paris",
                               "id": m["id"]}  # a new place: the first medium's id names it
    assert got["likes"] == {"count": 0} and got["comments"] == {"count": 0}
    assert got["user"]["username"] == a["username"] and got["user_has_liked"] is False
    assert got["link"].endswith(f"/p/{shortcode(int(m['id']))}/")
    for name, side in (("thumbnail", 150), ("low_resolution", 320),
                       ("standard_resolution", 600)):
        rendition = got["images"][name]
        assert (rendition["width"], rendition["height"]) == (side, side)
        with Image.open(io.BytesIO(blob(api, rendition["url"]))) as img:
            assert img.size == (side, side) and img.format == "JPEG"
            assert not img.getexif()  # metadata stripped
    head = api.http.get(got["images"]["thumbnail"]["url"].removeprefix(api.service.base))
    assert head.headers["content-type"] == "image/jpeg"
    assert "immutable" in head.headers["cache-control"]
    by_code = api.get(f"/v1/media/shortcode/{shortcode(int(m['id']))}", tb)
    assert by_code.json()["data"]["id"] == m["id"]


def test_video_upload_gets_a_cover_and_mp4_renditions(api: Api) -> None:
    """An MP4 is checked with ffprobe and rendered to a cover frame and square MP4s."""
    _, ta = api.user()
    r = upload(api, ta, video(), part="video", filename="clip.jpg")
    assert r.status_code == 200, r.text
    settle(api.env)
    got = api.get(f"/v1/media/{r.json()['data']['id']}", ta).json()["data"]
    assert got["type"] == "video" and set(got["videos"]) == {"low_resolution",
                                                            "standard_resolution"}
    assert got["videos"]["low_resolution"]["width"] == 64
    assert blob(api, got["videos"]["standard_resolution"]["url"])[4:8] == b"ftyp"
    assert blob(api, got["images"]["thumbnail"]["url"])[:3] == b"\xff\xd8\xff"


def test_every_upload_failure_is_a_clear_error_and_stores_nothing(api: Api) -> None:
    """Too large, too many pixels, not an image, truncated, fake, not a real MP4, wrong part,
    bad fields, no file, not multipart: precise 4xx; no event, no blob."""
    _, ta = api.user()
    jpeg = picture(200, 200)
    cases = [
        (upload(api, ta, b"\xff\xd8\xff" + b"\x00" * 400_000), 413, "APIMediaTooLargeError"),
        (upload(api, ta, picture(2100, 2000, fmt="PNG")), 413, "APIMediaTooLargeError"),
        (upload(api, ta, b"GIF89a" + b"\x00" * 100), 415, "APIInvalidMediaError"),
        (upload(api, ta, jpeg[:len(jpeg) // 2]), 415, "APIInvalidMediaError"),
        (upload(api, ta, b"\xff\xd8\xff\xe0" + b"not really a jpeg" * 10), 415,
         "APIInvalidMediaError"),
        (upload(api, ta, b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 200, part="video"), 415,
         "APIInvalidMediaError"),
        (upload(api, ta, jpeg, part="video"), 400, "APIInvalidParametersError"),
        (upload(api, ta, jpeg, lat="91", lng="0"), 400, "APIInvalidParametersError"),
        (upload(api, ta, jpeg, caption="x" * 2201), 400, "APIInvalidParametersError"),
        (upload(api, ta, jpeg, share_to="myspace"), 400, "APIInvalidParametersError"),
        (upload(api, ta, jpeg, location_name="Paris"), 400, "APIInvalidParametersError"),
        (api.http.post("/v1/media", data={"caption": "x"},
                       headers={"Authorization": f"Bearer {ta}"}), 415,
         "APIInvalidParametersError"),
        (api.http.post("/v1/media", files={"caption": (None, "only text")},
                       headers={"Authorization": f"Bearer {ta}"}), 400,
         "APIInvalidParametersError"),
    ]
    for i, (r, code, error_type) in enumerate(cases):
        assert (r.status_code, r.json()["meta"]["error_type"]) == (code, error_type), (i, r.text)
    blobs = api.env.config.media.blob_dir
    from pathlib import Path

    assert not [p for p in Path(blobs).rglob("*") if p.is_file() and p.parent.name != "tmp"
                and "upload" in p.name]
    assert not list((Path(blobs) / "tmp").glob("*.part"))
    assert api.get("/v1/users/self", ta).json()["data"]["counts"]["media"] == 0


def test_a_body_over_the_upload_limit_is_refused_before_it_is_read(api: Api) -> None:
    """The upload route has its own limit (larger than the API's, chosen from the request
    line before the body): a body over it gets 413 and is discarded unread; other routes
    keep the API's limit."""
    _, ta = api.user()
    r = api.http.post("/v1/media", content=b"x" * 2_000_000, headers={
        "Authorization": f"Bearer {ta}", "Content-Type": "multipart/form-data; boundary=b"})
    assert r.status_code == 413 and r.json()["meta"]["error_type"] == "APIRequestTooLargeError"
    assert "465536 bytes" in r.json()["meta"]["error_message"]  # 400,000 + 64 KiB framing
    r = api.http.post("/v1/users/self/relationship", content=b"x" * 1_100_000,
                      headers={"Authorization": f"Bearer {ta}"})
    assert r.status_code == 413  # the API's own limit elsewhere
    big = upload(api, ta, picture(300, 300, fmt="PNG") + b"\x00" * 1_200_000)
    assert big.status_code == 413  # within the route's body limit, over the photo limit


def test_recent_media_pages_and_deletion(api: Api) -> None:
    """A user's media newest first with max_id paging and timestamps; deletion by the owner
    only, after which the medium is gone everywhere it was readable."""
    a, ta = api.user()
    _, tb = api.user()
    ids = [post(api, ta, caption=f"n{i}") for i in range(3)]
    r = api.get(f"/v1/users/{a['id']}/media/recent", tb, count=2)
    assert r.status_code == 200, r.text
    assert [m["id"] for m in r.json()["data"]] == ids[::-1][:2]
    nxt = r.json()["pagination"]["next_max_id"]
    r2 = api.get(f"/v1/users/{a['id']}/media/recent", tb, count=2, max_id=nxt)
    assert [m["id"] for m in r2.json()["data"]] == [ids[0]]
    assert api.get(f"/v1/users/{a['id']}/media/recent", tb, min_timestamp="4000000000"
                   ).json()["data"] == []
    r = api.http.delete(f"/v1/media/{ids[1]}", headers={"Authorization": f"Bearer {tb}"})
    assert r.status_code == 400 and r.json()["meta"]["error_type"] == "APINotAllowedError"
    r = api.http.delete(f"/v1/media/{ids[1]}", headers={"Authorization": f"Bearer {ta}"})
    assert r.status_code == 200, r.text
    assert api.get(f"/v1/media/{ids[1]}", ta).status_code == 404
    assert [m["id"] for m in api.get(f"/v1/users/{a['id']}/media/recent", tb).json()["data"]
            ] == [ids[2], ids[0]]
    assert api.get(f"/v1/users/{a['id']}", ta).json()["data"]["counts"]["media"] == 2


def test_private_accounts_media_and_unknown_ids(api: Api) -> None:
    """A private account's media: APINotAllowedError for a non-follower, visible once
    approved; unknown ids and short codes are 404; blob names cannot traverse."""
    p, tp = api.user(is_private="true")
    _, tb = api.user()
    medium = post(api, tp)
    r = api.get(f"/v1/media/{medium}", tb)
    assert r.status_code == 400 and r.json()["meta"]["error_type"] == "APINotAllowedError"
    r = api.get(f"/v1/users/{p['id']}/media/recent", tb)
    assert r.status_code == 400 and r.json()["meta"]["error_type"] == "APINotAllowedError"
    b_id = api.get("/v1/users/self", tb).json()["data"]["id"]
    api.relate(tb, p["id"], "follow")
    settle(api.env)
    api.relate(tp, b_id, "approve")
    assert api.get(f"/v1/media/{medium}", tb).status_code == 200
    assert api.get("/v1/media/123456789", tb).status_code == 404
    assert api.get("/v1/media/shortcode/AAAA", tb).status_code == 404
    for bad in ("..%2F..%2Fetc%2Fpasswd", "a" * 64 + ".exe", "0" * 64 + ".jpg"):
        assert api.http.get(f"/blobs/{bad}").status_code == 404


def test_an_upload_retried_with_its_idempotency_key_posts_once(api: Api) -> None:
    """The same upload sent twice with one Idempotency-Key answers the first medium; the
    owner has one medium and the bytes are stored once."""
    a, ta = api.user()
    data = picture(321, 123)
    first, again = (api.http.post(
        "/v1/media", files={"photo": ("p.jpg", data)}, data={"caption": "once"},
        headers={"Authorization": f"Bearer {ta}", "Idempotency-Key": "upload-1"})
        for _ in range(2))
    assert first.status_code == again.status_code == 200, again.text
    assert first.json()["data"]["id"] == again.json()["data"]["id"]
    assert api.get(f"/v1/users/{a['id']}", ta).json()["data"]["counts"]["media"] == 1


def test_an_interrupted_upload_leaves_no_event_and_no_file(api: Api) -> None:
    """A client that hangs up half-way through its upload: no medium, no blob, no
    temporary file of ours; the service goes on answering."""
    from pathlib import Path

    _, ta = api.user()
    port = int(api.service.base.rsplit(":", 1)[1])
    data = picture(400, 400)
    body = (b"--b\r\nContent-Disposition: form-data; name=\"photo\"; filename=\"p.jpg\"\r\n\r\n"
            + data + b"\r\n--b--\r\n")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"POST /v1/media HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                     + ta.encode() + b"\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                     + f"Content-Length: {len(body)}\r\n\r\n".encode() + body[:len(body) // 2])
    assert api.get("/v1/users/self", ta).json()["data"]["counts"]["media"] == 0
    root = Path(api.env.config.media.blob_dir)
    assert not [p for p in root.rglob("*") if p.is_file() and p.name.startswith(
        hashlib.sha256(data).hexdigest())]
    assert not list((root / "tmp").glob("*.part"))
