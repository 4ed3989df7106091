"""Idempotency for POSTs that append no event (token grants, revocations): the first answer
is kept in Redis, sealed (it may hold a credential), for ``oauth.code_ttl`` seconds, and a
retry with the same ``Idempotency-Key`` (and the same parameters: ``Call.idempotency_key``)
gets it back without running the handler again.

POSTs that append events need none of this: the event store records their key with the
append, and the answer is derived from the recorded events.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from server.api.endpoint import Call, Reply
from server.secretbox import SecretBox

PURPOSE = "idempotent responses"


def remembered(call: Call, principal: str, handler: Callable[[], Reply]) -> Reply:
    """``handler()``'s reply, or the reply a request with the same key already got."""
    key = call.idempotency_key(principal)
    if key is None:
        return handler()
    ctx = call.ctx
    box = SecretBox(ctx.config.secrets.key, PURPOSE)
    stored = ctx.redis.get(f"idem:{key}")
    if stored:
        saved = json.loads(box.open(stored))
        return Reply(data=saved["data"], body=saved["body"].encode() if saved["body"] else None,
                     code=saved["code"])
    reply = handler()
    saved = {"data": reply.data, "code": reply.code,
             "body": reply.body.decode() if reply.body is not None else None}
    ctx.redis.set(f"idem:{key}", box.seal(json.dumps(saved).encode()),
                  ex=ctx.config.oauth.code_ttl)
    return reply
