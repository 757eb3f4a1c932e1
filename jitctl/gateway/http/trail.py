"""What the trail keeps of the exchanges through the http shell (docs/audit-schema.md).

- Every exchange starts an `Exchange`: the request's fields for both of its records (method,
  canonical path and query masked by the target's detectors, credential-like query
  parameters redacted, the selected headers with secrets redacted; the decision and rule are
  added as they are known), and when it started.
- `http.request` is written ahead, durably, before the upstream sees the request (the shell
  awaits it; docs/security.md). `http.response` ends every exchange, forwarded or refused: a
  non-durable `Record` that nothing waits for. A forwarded one adds the status, response
  headers, sizes and the first `body_limit` bytes of each body, masked as
  `jitctl_http.bodies` says; a response masked on its way to the client is recorded as sent.
- `http.ws.message` is one WebSocket message (relay.py): its first `body_limit` bytes, a
  text's masked by detectors, a binary one's kept as the record's data; one masked on its way
  to the client (jitctl_http.reframe) is recorded as sent, with what masking found. One from
  the client is durable before it is forwarded, one from the upstream is not waited for.
- `http.upgrade.end` closes an upgraded connection: for a WebSocket the message counts and the
  close, else the first bytes each way (the upstream's as the client got them: the broker's
  secrets replaced, and counted in `masked`), masked by detectors.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

import jitctl_http.bodies as bodies
import jitctl_http.headers as headers
from jitctl.gateway.http.events import Headers
from jitctl.plugin import Record
from jitctl_http.reframe import Reframer
from jitctl_http.websocket import WS_CLIENT, Message, Tap

# The values `Trail.response` leaves out. A constant: `(None, {}, "")` written in its loop
# would build a dict for every field of every record.
_NO_VALUE: tuple[object, ...] = (None, {}, "")


@dataclass(slots=True)
class Exchange:
    """One request's records in the making."""

    base: dict[str, Any]  # the request's fields, in both records
    time_us: int  # when it started: the records' time
    started: float  # ... and on the monotonic clock, for its duration


class Trail:
    def __init__(self, io: Any, rules: headers.HeaderRules, masks: Any, fields: set[str]) -> None:
        self.io = io
        self.rules = rules
        self.masks = masks  # a MaskPolicy, or None when the target masks nothing
        self.fields = fields  # JSON field names to mask

    def masked(self, text: str) -> str:
        """`text` for the trail, with the target's detectors applied (paths, queries)."""
        if self.masks is None or not text:
            return text
        masked: str = self.masks.mask_text(text)[0]
        return masked

    def start(self, method: str, query: str, fields: Headers) -> Exchange:
        base = {
            "method": method,
            "path": "",
            "query": self.masked(headers.query_for_record(query)),
            "request_headers": self.rules.for_record(fields),
        }
        return Exchange(base, time.time_ns() // 1000, time.monotonic())

    def request(self, exchange: Exchange) -> Awaitable[Any]:
        """`http.request`, durable: await it before the upstream sees the request."""
        record = Record("http.request", exchange.base, durable=True)
        return self.io.record(record, exchange.time_us)  # type: ignore[no-any-return]

    def response(self, exchange: Exchange, status: int, by: str = "upstream", **more: Any) -> None:
        """`http.response`; of `more`, fields with no value (None, {}, "") are left out."""
        payload = self._ended(exchange, status, by)
        for key, value in more.items():
            if value not in _NO_VALUE:
                payload[key] = value
        self.io.record(Record("http.response", payload), exchange.time_us)

    def _ended(self, exchange: Exchange, status: int, by: str) -> dict[str, Any]:
        """The fields every `http.response` starts with."""
        return {
            **exchange.base,
            "status": status,
            "duration_ms": round((time.monotonic() - exchange.started) * 1000, 3),
            "by": by,
        }

    def forwarded(
        self,
        exchange: Exchange,
        status: int,
        response_fields: Headers,
        sent: bodies.Capture,
        received: bodies.Capture,
        types: tuple[bytes, bytes],
        counts: Counter[str],
        masked: bool,
    ) -> None:
        """`http.response` of a forwarded request; `types`: the bodies' content types;
        `counts`: what masking the response found; `masked`: it was masked for the client.

        The fields are those `response` would write from keywords, in the same order, set
        one by one: the record of every forwarded request is built here, and this skips
        packing the keywords and testing each value for emptiness."""
        request_type, response_type = types
        request_text, request_counts = bodies.for_record(
            sent, request_type, self.masks, self.fields
        )
        response_text, _ = bodies.for_record(  # a masked body is recorded as sent
            received, response_type, None if masked else self.masks, self.fields
        )
        response_headers = self.rules.for_record(response_fields)
        payload = self._ended(exchange, status, "upstream")
        if response_headers:
            payload["response_headers"] = response_headers
        payload["request_bytes"] = sent.size
        payload["response_bytes"] = received.size
        if request_text:
            payload["request_body"] = request_text
        payload["request_body_truncated"] = sent.truncated
        if response_text:
            payload["response_body"] = response_text
        payload["response_body_truncated"] = received.truncated
        if counts or request_counts:
            found = dict(counts + request_counts)
            if found:
                payload["masked"] = found
        self.io.record(Record("http.response", payload), exchange.time_us)

    def upgrade_ended(
        self,
        exchange: Exchange,
        sent: bodies.Capture,
        received: bodies.Capture,
        secrets_found: int = 0,
    ) -> None:
        """`http.upgrade.end` of a raw upgrade; `secrets_found`: the broker's secrets
        replaced in what the upstream sent."""
        texts = {}
        counts: Counter[str] = Counter()
        if secrets_found:
            counts[bodies.SECRET_FOUND] = secrets_found
        for name, capture in (("client", sent), ("upstream", received)):
            text = bytes(capture.kept).decode("utf-8", "replace")
            if self.masks is not None:
                text, found = self.masks.mask_text(text)
                counts.update(found)
            texts[name] = text
        self.io.record(
            Record(
                "http.upgrade.end",
                {
                    **exchange.base,
                    "client_bytes": sent.size,
                    "upstream_bytes": received.size,
                    "client_head": texts["client"],
                    "upstream_head": texts["upstream"],
                    "masked": dict(counts),
                },
            )
        )

    def ws_message(self, exchange: Exchange, sender: str, message: Message) -> Awaitable[Any]:
        """`http.ws.message`; durable when the client sent it (await it before forwarding)."""
        payload: dict[str, Any] = {
            "path": exchange.base["path"],
            "from": sender,
            "type": message.kind,
            "size": message.size,
            "truncated": message.size > len(message.head),
        }
        data = b""
        found = message.masked  # masked on the wire: recorded as sent, with what was found
        if message.kind == "text":
            if found is None and self.masks is not None and message.head:
                text, found = self._masked_message(message)
            else:
                text = message.head.decode("utf-8", "replace")
            payload["text"] = text
        else:
            data = message.head
        if found:
            payload["masked"] = dict(found)
        record = Record("http.ws.message", payload, data, durable=sender == WS_CLIENT)
        return self.io.record(record)  # type: ignore[no-any-return]

    def _masked_message(self, message: Message) -> tuple[str, Counter[str]]:
        """A text message not masked on the wire (the client's), for the trail: as a request
        body is (`bodies.for_record`): JSON by field names and detectors, a JSON message cut
        at the limit withheld when field names are masked (it no longer parses), any other
        text by detectors."""
        head = message.head
        looks_json = head.lstrip()[:1] in (b"{", b"[")
        if message.size > len(head):
            if looks_json and self.fields:
                return "[WITHHELD]", Counter({"WITHHELD": 1})
            text, counts = self.masks.mask_text(head.decode("utf-8", "replace"))
            return text, counts
        masked, counts = bodies.mask_body(head, b"", self.masks, self.fields)
        return masked.decode("utf-8", "replace"), counts

    def websocket_ended(
        self,
        exchange: Exchange,
        sizes: tuple[int, int],
        taps: dict[str, Tap | Reframer],
        error: str,
    ) -> None:
        """`http.upgrade.end` of a WebSocket: bytes (client, upstream) and what each side sent."""
        payload: dict[str, Any] = {
            **exchange.base,
            "client_bytes": sizes[0],
            "upstream_bytes": sizes[1],
            "websocket": {
                sender: {
                    "messages": tap.messages,
                    "pings": tap.pings,
                    "pongs": tap.pongs,
                    **(
                        {"close": {"code": tap.closed.code, "reason": tap.closed.reason}}
                        if tap.closed is not None
                        else {}
                    ),
                }
                for sender, tap in taps.items()
            },
        }
        if error:
            payload["error"] = error
        self.io.record(Record("http.upgrade.end", payload))
