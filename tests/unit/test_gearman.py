"""The Gearman protocol's pure parts: packets, incremental parsing, admin answers, servers."""

from __future__ import annotations

import pytest

from workers.gearman import (
    RES,
    Decoder,
    FunctionStatus,
    GearmanClient,
    P,
    ProtocolError,
    encode,
    parse_status,
    parse_workers,
    validate_unique,
)


def test_encode_is_header_then_nul_joined_arguments() -> None:
    """A SUBMIT_JOB_BG packet: \\0REQ, type 18, body size, then function\\0unique\\0data."""
    packet = encode(P.SUBMIT_JOB_BG, b"fn", b"u1", b"a\0b")
    assert packet == b"\0REQ" + (18).to_bytes(4, "big") + (9).to_bytes(4, "big") + b"fn\0u1\0a\0b"


def test_decoder_reassembles_split_packets_and_keeps_nuls_in_the_last_argument() -> None:
    """Bytes fed one at a time still give whole packets; the payload may contain NULs."""
    data = (encode(P.JOB_ASSIGN_UNIQ, b"H:1", b"fn", b"u", b"\0pay\0load", magic=RES)
            + encode(P.NO_JOB, magic=RES) + encode(P.ERROR, b"CODE", b"text", magic=RES))
    decoder = Decoder()
    packets = [p for i in range(len(data)) for p in decoder.feed(data[i:i + 1])]
    assert [(p.type, p.args) for p in packets] == [
        (P.JOB_ASSIGN_UNIQ, (b"H:1", b"fn", b"u", b"\0pay\0load")),
        (P.NO_JOB, ()),
        (P.ERROR, (b"CODE", b"text")),
    ]


def test_decoder_rejects_bytes_that_are_not_gearman() -> None:
    """A request magic (or anything else) where a response is expected is a protocol error."""
    with pytest.raises(ProtocolError):
        Decoder().feed(encode(P.NOOP))


def test_unique_keys_longer_than_64_bytes_are_refused() -> None:
    """gearmand's limit is 64 bytes (not characters)."""
    assert validate_unique("k" * 64) == b"k" * 64
    with pytest.raises(ValueError, match="max 64"):
        validate_unique("é" * 33)


def test_admin_answers_parse() -> None:
    """status lines give queued = total - running; workers lines give their functions."""
    [st] = parse_status(["t1.advance\t5\t2\t3"])
    assert st == FunctionStatus("t1.advance", 5, 2, 3) and st.queued == 3
    [w] = parse_workers(["33 127.0.0.1 shutterlog-w : t1.advance t1.task"])
    assert (w.fd, w.client_id, w.functions) == (33, "shutterlog-w", ("t1.advance", "t1.task"))
    assert parse_workers(["40 127.0.0.1 - :"])[0].functions == ()
    # an IPv6 address holds " :" too; a connection being closed is listed with fd -1
    [v6, closing] = parse_workers(["37 ::1 w : advance task", "-1 ::3530:3930 - :"])
    assert (v6.ip, v6.client_id, v6.functions) == ("::1", "w", ("advance", "task"))
    assert (closing.fd, closing.functions) == (-1, ())
    with pytest.raises(ProtocolError):
        parse_status(["garbage"])


def test_a_unique_key_always_prefers_the_same_server_and_moves_only_when_it_is_down() -> None:
    """Rendezvous order: stable per key, spread over servers; a down server goes last."""
    client = GearmanClient(["a:1", "b:2", "c:3"])
    firsts = {client.order(f"c:{i}")[0] for i in range(100)}
    assert firsts == {"a:1", "b:2", "c:3"}
    key = "consumer:7"
    preferred = client.order(key)
    assert client.order(key) == preferred
    client._mark_down(preferred[0], OSError("down"))
    assert client.order(key) == preferred[1:] + preferred[:1]
