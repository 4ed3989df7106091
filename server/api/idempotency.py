"""Idempotency for POSTs that append no event (token grants, revocations): the first answer
is kept in Redis, sealed (it may hold a credential), for ``oauth.code_ttl`` seconds, and a
retry with the same ``Idempotency-Key`` gets it back without running the handler again. The
answer is bound to the request's parameters (a digest, sealed with it): the same key with
other parameters is refused, as Stripe does, never answered with another request's reply
(a password grant's token for whoever repeats its key).

POSTs that append events need none of this: the event store records their key with the
append, and the answer is derived from the recorded events.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable

from server.api.endpoint import Call, Reply
from server.api.envelope import invalid
from server.secretbox import SecretBox

PURPOSE = "idempotent responses"


def remembered(call: Call, principal: str, handler: Callable[[], Reply]) -> Reply:
    """``handler()``'s reply, or the reply a request with the same key already got."""
    key = call.idempotency_key(principal)
    if key is None:
        return handler()
    ctx = call.ctx
    box = SecretBox(ctx.config.secrets.key, PURPOSE)
    digest = hashlib.sha256(json.dumps(call.params, sort_keys=True, default=str).encode())
    request = digest.hexdigest()
    stored = ctx.redis.get(f"idem:{key}")
    if stored:
        saved = json.loads(box.open(stored))
        if saved.get("request") != request:
            raise invalid("this Idempotency-Key was used with other parameters: send a new key "
                          "for a new request")
        return Reply(data=saved["data"], body=saved["body"].encode() if saved["body"] else None,
                     code=saved["code"])
    reply = handler()
    saved = {"request": request, "data": reply.data, "code": reply.code,
             "body": reply.body.decode() if reply.body is not None else None}
    ctx.redis.set(f"idem:{key}", box.seal(json.dumps(saved).encode()),
                  ex=ctx.config.oauth.code_ttl)
    return reply
