"""POST /webhooks/github: verify, bound, dedupe, record, 202. No network call on this path.

Order matters for cost: the body is bounded in size, time and shared memory while it is read
(porter/web/bodies.py), the signature is checked before anything is parsed, and a comment whose
raw bytes never mention the handle is answered without parsing JSON or touching the database.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from porter.errors import BadRequest, Unauthorized
from porter.log_context import bound
from porter.web.bodies import BodyBudget, read_bounded
from porter.web.services import services
from porter.webhooks import (
    TRIGGER_EVENTS,
    Ignored,
    decode_delivery,
    decode_json,
    may_mention,
    verify_signature,
)

_IGNORED = b'{"status":"ignored","reason":"comment does not address Porter"}'
MAX_DELIVERY_ID = 128


async def github_webhook(request: Request) -> Response:
    """Every line logged while a delivery is handled names it (unverified yet, so only a
    printable id of a sane length)."""
    delivery_id = request.headers.get("x-github-delivery", "")
    if not (0 < len(delivery_id) <= MAX_DELIVERY_ID and delivery_id.isprintable()):
        return await _github_webhook(request)
    with bound(delivery_id=delivery_id):
        return await _github_webhook(request)


async def _github_webhook(request: Request) -> Response:
    svc = services(request)
    settings = svc.settings
    secret = settings.github_webhook_secret
    if secret is None:
        return JSONResponse(
            {"error": "webhooks are off: PORTER_GITHUB_WEBHOOK_SECRET is not set"}, 503
        )
    budget: BodyBudget = request.app.state.body_budget
    body = await read_bounded(request, settings.max_body_bytes, budget=budget,
                              within=settings.body_timeout)
    # From here to the last use of an unsigned body nothing awaits, so no other read can start
    # while it is held outside the budget.
    if not verify_signature(body, request.headers.get("x-hub-signature-256"),
                            secret=secret.get().encode()):
        del body  # not kept alive by the traceback while the 401 is sent
        svc.metrics.unauthorized.inc()
        raise Unauthorized("missing or wrong X-Hub-Signature-256")
    event = request.headers.get("x-github-event", "")
    delivery_id = request.headers.get("x-github-delivery", "")
    if not delivery_id or len(delivery_id) > MAX_DELIVERY_ID:
        raise BadRequest("X-GitHub-Delivery header is missing or too long")

    if event in TRIGGER_EVENTS and not may_mention(body, settings.mention):
        if not _looks_like_object(body):
            raise BadRequest("body is not valid JSON")
        svc.metrics.ignored.inc()
        return Response(_IGNORED, 202, media_type="application/json")

    outcome = decode_delivery(event, delivery_id, decode_json(body), handle=settings.mention,
                              agents=svc.agents)
    del body  # waiting requests hold only their small Trigger, not the parsed payload
    if isinstance(outcome, Ignored):
        svc.metrics.ignored.inc()
        return JSONResponse({"status": "ignored", "reason": outcome.reason}, 202)
    result = await svc.intake.submit(outcome)
    if result.duplicate:
        svc.metrics.duplicate.inc()
        return Response(b'{"status":"duplicate"}', 202, media_type="application/json")
    svc.metrics.recorded.inc()
    svc.runtime.task_recorded()
    if result.task_id is not None:
        return Response(b'{"status":"queued","task_id":%d}' % result.task_id, 202,
                        media_type="application/json")
    return Response(b'{"status":"accepted","job_id":%d}' % (result.job_id or 0), 202,
                    media_type="application/json")


def _looks_like_object(body: bytes) -> bool:
    """A structural check for comment deliveries we will not parse: signed, so GitHub sent it."""
    stripped = body.strip()
    return stripped.startswith(b"{") and stripped.endswith(b"}")
