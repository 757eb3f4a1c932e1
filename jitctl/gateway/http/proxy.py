"""One client connection through the http shell: decide, forward, mask, record (see
jitctl.gateway.http for the order of things)."""

from __future__ import annotations

import contextlib
import json
import secrets
import time
from collections import Counter
from typing import Any

import h11
import jitctl_http.bodies as bodies
import jitctl_http.headers as headers
from jitctl_http.policy import AmbiguousPath, Decision, HttpPolicy, canonical_path

from jitctl.gateway.http.relay import relay
from jitctl.gateway.http.upstream import Refusal, Upstream, UpstreamConnection
from jitctl.plugin import Hold, Record

FLUSH_SIZE = 64 * 1024  # bytes for the client held back at most while more is already here
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


class Proxy:
    def __init__(self, io: Any, upstream: Upstream, first: UpstreamConnection) -> None:
        self.io = io
        self.target = io.context.target
        self.options = self.target.http
        self.upstream = upstream
        self.up: UpstreamConnection | None = first
        self.client = h11.Connection(h11.SERVER)
        self.policy = HttpPolicy.from_target(self.target, io.context.groups)
        self.rules = headers.HeaderRules.of(self.options)
        self.injected = headers.credential_header(
            self.options, io.context.settings.get("credential", {})
        )
        self.approvals = bool(io.context.settings.get("approvals"))
        self.masks: Any = None
        if any(m.columns or m.detectors for m in self.target.masks):
            from jitctl.masking import MaskPolicy

            self.masks = MaskPolicy.from_config(self.target.masks)
        self.fields = bodies.field_names(self.target.masks)
        credential = io.context.settings.get("credential", {})
        self.secrets = [
            v.encode("latin-1", "replace")
            for v in (credential.get("token"), credential.get("password"))
            if v
        ]
        if self.injected is not None:
            self.secrets.append(self.injected[1])
        # A minted GCP token outlives no connection: past this, the connection is closed after
        # its current exchange, so the client's next one is a new session with a fresh token.
        self.renew_at = float(credential.get("expires_at") or 0) - 60
        # Bytes for the client, written when the shell is about to wait for I/O (or past
        # FLUSH_SIZE): a response whose head and body arrived together leaves in one write.
        self.pending: list[bytes] = []
        self.pending_size = 0

    def masked(self, text: str) -> str:
        """`text` for the trail, with the target's detectors applied (paths, queries)."""
        if self.masks is None or not text:
            return text
        masked: str = self.masks.mask_text(text)[0]
        return masked

    def closing(self) -> list[tuple[bytes, bytes]]:
        """`Connection: close` once the injected token is about to expire (see __init__)."""
        if self.renew_at > 0 and time.time() >= self.renew_at:
            return [(b"connection", b"close")]
        return []

    def close(self) -> None:
        if self.up is not None:
            self.up.close()

    # --- the client leg -------------------------------------------------------------------

    async def client_event(self) -> Any:
        while True:
            event = self.client.next_event()
            if event is not h11.NEED_DATA:
                return event
            if self.client.they_are_waiting_for_100_continue:
                await self.to_client(h11.InformationalResponse(status_code=100, headers=[]))
            await self.flush()
            self.client.receive_data(await self.io.read())

    async def to_client(self, event: Any, flush: bool = False) -> None:
        data = self.client.send(event)
        if data:
            self.pending.append(data)
            self.pending_size += len(data)
        if flush or self.pending_size >= FLUSH_SIZE:
            await self.flush()

    async def flush(self) -> None:
        """Write what is pending for the client (before the shell waits for anything)."""
        if self.pending:
            out = b"".join(self.pending)  # one part: no copy
            self.pending.clear()
            self.pending_size = 0
            await self.io.write(out)

    async def run(self) -> None:
        while True:
            try:
                event = await self.client_event()
            except h11.RemoteProtocolError as exc:
                if self.client.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                    body = {"error": f"bad request: {exc}"}
                    with contextlib.suppress(h11.LocalProtocolError):
                        await self.json_reply(exc.error_status_hint, body, close=True)
                return
            if isinstance(event, h11.ConnectionClosed) or not isinstance(event, h11.Request):
                return
            if not await self.exchange(event):
                return
            if self.client.our_state is not h11.DONE or self.client.their_state is not h11.DONE:
                return
            if self.renew_at > 0 and time.time() >= self.renew_at:
                return  # the injected token is about to expire (see __init__)
            self.client.start_next_cycle()

    async def json_reply(self, status: int, body: dict[str, Any], close: bool = False) -> None:
        data = json.dumps(body).encode()
        fields = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(data))]
        if close:
            fields.append((b"connection", b"close"))
        await self.to_client(h11.Response(status_code=status, headers=fields))
        await self.to_client(h11.Data(data=data))
        await self.to_client(h11.EndOfMessage(), flush=True)

    # --- one request ----------------------------------------------------------------------

    async def exchange(self, request: h11.Request) -> bool:
        """Decide, forward and record one request; False when the connection must end."""
        started = time.monotonic()
        time_us = time.time_ns() // 1000
        method = request.method.decode("ascii", "replace").upper()
        raw_target = request.target.decode("latin-1")
        raw_path, _, query = raw_target.partition("?")
        fields = list(request.headers)  # h11's Headers iterate slowly; several passes follow
        base: dict[str, Any] = {
            "method": method,
            "path": "",
            "query": self.masked(headers.query_for_record(query)),
            "request_headers": self.rules.for_record(fields),
        }
        request_type = headers.header(fields, b"content-type")
        early: list[bytes] = []
        complete = False
        try:
            path, query = canonical_path(raw_target)
        except (AmbiguousPath, UnicodeDecodeError) as exc:
            base["path"] = self.masked(raw_path)  # as sent: it has no canonical form
            decision = Decision("deny", "path", str(exc))
            return await self.refuse(request, base, decision, 400, time_us, started, complete)
        base["path"] = self.masked(path)
        body = None
        if self.policy.needs_body(method, path):
            early, complete = await self.read_body(self.options.mask_limit)
            body = b"".join(early) if complete else None
        decision = self.policy.decide(method, path, body)
        upstream_headers, dropped = self.rules.to_upstream(
            fields,
            self.upstream.host_header,
            self.injected,
            identity_encoding=self.masks is not None,
        )
        base.update(decision=decision.action, rule=decision.rule)
        if dropped:
            base["client_credentials_dropped"] = dropped
        if decision.action == "approve":
            decision = await self.approve(method, raw_target, decision)
            base["approval"] = decision.message
        if decision.action != "allow":
            return await self.refuse(request, base, decision, 403, time_us, started, complete)
        if self.options.write_ahead == "all" or method not in SAFE_METHODS:
            # Write-ahead (docs/security.md): on record before the upstream sees it.
            await self.io.record(Record("http.request", base, durable=True), time_us)
        try:
            return await self.forward(
                request, upstream_headers, early, complete, base, request_type, time_us, started
            )
        except Refusal as refusal:
            self.drop_upstream()
            if self.client.our_state is not h11.SEND_RESPONSE:
                return False  # the response had started: all we can do is cut it
            self.record_response(base, time_us, started, refusal.status, by="broker")
            await self.json_reply(refusal.status, refusal.body, close=True)
            return False

    async def read_body(self, limit: int) -> tuple[list[bytes], bool]:
        """The request body's chunks read so far, and whether that is all of it (≤ limit)."""
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            event = await self.client_event()
            if isinstance(event, h11.EndOfMessage):
                return chunks, True
            if isinstance(event, h11.Data):
                chunks.append(bytes(event.data))
                size += len(event.data)
        return chunks, False

    async def approve(self, method: str, raw_target: str, decision: Decision) -> Decision:
        if not self.approvals:
            return Decision(
                "deny",
                decision.rule,
                "this request needs approval and this broker offers no approvals",
            )
        hold_id = secrets.token_hex(6)
        # An interim answer names the request, for a person watching (`curl -v`); clients skip
        # 1xx responses, and the final answer follows once the hold is decided.
        hint = f"jitctl request approve {hold_id}".encode()
        await self.to_client(
            h11.InformationalResponse(status_code=102, headers=[(b"x-jitctl-approval", hint)]),
            flush=True,
        )
        review = await self.io.hold(
            Hold(
                hold_id,
                f"{method} {raw_target}",
                {"kind": "http.request", "rule": decision.rule, "reason": decision.message},
            )
        )
        if review.approved:
            return Decision("allow", decision.rule, "approved")
        return Decision("deny", decision.rule, f"approval {review.outcome}: {review.reason}")

    async def refuse(
        self,
        request: h11.Request,
        base: dict[str, Any],
        decision: Decision,
        status: int,
        time_us: int,
        started: float,
        complete: bool,
    ) -> bool:
        """Answer a request the upstream never sees; the rest of its body is discarded."""
        if not complete:
            complete = await self.discard_body()
        body = {
            "error": "denied by policy" if status == 403 else "bad request",
            "rule": decision.rule,
            "message": decision.message,
            "method": base["method"],
            "path": base["path"],
            "target": self.target.name,
        }
        self.record_response(
            base,
            time_us,
            started,
            status,
            by="broker",
            decision=decision.action,
            rule=decision.rule,
            message=decision.message,
        )
        await self.json_reply(status, body, close=not complete)
        return complete

    async def discard_body(self) -> bool:
        """Read what is already here of a refused request's body; True if it all was."""
        while True:
            event = self.client.next_event()
            if event is h11.NEED_DATA:
                return False  # more is on its way: answer and close rather than read it all
            if isinstance(event, h11.EndOfMessage):
                return True

    # --- the upstream leg -----------------------------------------------------------------

    def drop_upstream(self) -> None:
        if self.up is not None:
            self.up.close()
            self.up = None

    async def connection(self) -> UpstreamConnection:
        if self.up is not None and self.up.h11.our_state is h11.IDLE:
            return self.up
        self.drop_upstream()
        try:
            self.up = await UpstreamConnection.open(self.upstream)
        except (OSError, TimeoutError) as exc:
            raise Refusal(502, {"error": f"cannot reach {self.target.name}: {exc}"}) from None
        return self.up

    async def forward(
        self,
        request: h11.Request,
        upstream_headers: list[tuple[bytes, bytes]],
        early: list[bytes],
        complete: bool,
        base: dict[str, Any],
        request_type: bytes,
        time_us: int,
        started: float,
    ) -> bool:
        up = await self.connection()
        sent = bodies.Capture(self.options.body_limit)
        try:
            # What is here already (head, a body read early) leaves in one write; the rest of
            # a body is written as it arrives, one read at a time (memory stays bounded).
            up.send(
                h11.Request(
                    method=request.method,
                    target=self.upstream.prefix.encode() + request.target,
                    headers=upstream_headers,
                )
            )
            for chunk in early:
                sent.feed(chunk)
                up.send(h11.Data(data=chunk))
            while not complete:
                await up.flush()
                event = await self.client_event()
                if isinstance(event, h11.EndOfMessage):
                    break
                if isinstance(event, h11.Data):
                    sent.feed(event.data)
                    up.send(h11.Data(data=event.data))
            up.send(h11.EndOfMessage())
            await up.flush()
            response = await up.next_event()
            while isinstance(response, h11.InformationalResponse) and response.status_code != 101:
                response = await up.next_event()
        except (OSError, h11.ProtocolError) as exc:
            raise Refusal(502, {"error": f"{self.target.name} failed: {exc}"}) from None
        if not isinstance(response, h11.Response | h11.InformationalResponse):
            raise Refusal(502, {"error": f"{self.target.name} closed the connection"})
        fields = list(response.headers)  # h11's Headers iterate slowly; several passes follow
        if isinstance(response, h11.InformationalResponse):  # 101: the upgrade was accepted
            return await self.upgraded(response, fields, base, time_us, started)
        content_type = headers.header(fields, b"content-type")
        encoding = headers.header(fields, b"content-encoding").lower()
        masked = (
            self.masks is not None
            and bodies.maskable(content_type)
            and base["method"] != "HEAD"
            and response.status_code not in (204, 304)
        )
        if masked and encoding not in (b"", b"identity"):
            raise Refusal(502, {"error": "the upstream sent an encoded body the gateway masks"})
        received = bodies.Capture(self.options.body_limit)
        counts: Counter[str] = Counter()
        try:
            if masked:
                counts = await self.masked_response(up, response, fields, content_type, received)
            else:
                await self.streamed_response(up, response, fields, received)
        except (OSError, h11.ProtocolError) as exc:
            raise Refusal(502, {"error": f"{self.target.name} failed: {exc}"}) from None
        if up.reusable:
            up.h11.start_next_cycle()
        else:
            self.drop_upstream()
        request_text, request_counts = bodies.for_record(
            sent, request_type, self.masks, self.fields
        )
        response_text, _ = bodies.for_record(  # a masked body is recorded as sent
            received, content_type, None if masked else self.masks, self.fields
        )
        self.record_response(
            base,
            time_us,
            started,
            response.status_code,
            response_headers=self.rules.for_record(fields),
            request_bytes=sent.size,
            response_bytes=received.size,
            request_body=request_text,
            request_body_truncated=sent.truncated,
            response_body=response_text,
            response_body_truncated=received.truncated,
            masked=dict(counts + request_counts),
        )
        return True

    async def streamed_response(
        self,
        up: UpstreamConnection,
        response: h11.Response,
        fields: headers.Headers,
        received: bodies.Capture,
    ) -> None:
        await self.to_client(
            h11.Response(
                status_code=response.status_code,
                headers=headers.to_client(fields) + self.closing(),
                reason=response.reason,
            )
        )
        scrub = bodies.Scrub(self.secrets)
        while True:
            event = await up.next_event(idle=self.flush)
            if isinstance(event, h11.Data):
                data = scrub.feed(event.data)
                if data:
                    received.feed(data)
                    await self.to_client(h11.Data(data=data))
            elif isinstance(event, h11.EndOfMessage):
                data = scrub.flush()
                if data:
                    received.feed(data)
                    await self.to_client(h11.Data(data=data))
                await self.to_client(event, flush=True)
                return
            else:
                raise h11.RemoteProtocolError(f"unexpected {type(event).__name__}")

    async def masked_response(
        self,
        up: UpstreamConnection,
        response: h11.Response,
        fields: headers.Headers,
        content_type: bytes,
        received: bodies.Capture,
    ) -> Counter[str]:
        chunks: list[bytes] = []
        size = 0
        while True:
            event = await up.next_event()
            if isinstance(event, h11.Data):
                chunks.append(bytes(event.data))
                size += len(event.data)
                if size > self.options.mask_limit:
                    raise Refusal(
                        502,
                        {
                            "error": "the response is larger than this target's mask_limit "
                            f"({self.options.mask_limit} bytes), so it cannot be masked",
                        },
                    )
            elif isinstance(event, h11.EndOfMessage):
                break
            else:
                raise h11.RemoteProtocolError(f"unexpected {type(event).__name__}")
        scrub = bodies.Scrub(self.secrets)
        whole = scrub.feed(b"".join(chunks)) + scrub.flush()
        body, counts = bodies.mask_body(whole, content_type, self.masks, self.fields)
        received.feed(body)
        to_client = headers.to_client(fields, reframe=True) + self.closing()
        to_client.append((b"content-length", b"%d" % len(body)))
        await self.to_client(
            h11.Response(
                status_code=response.status_code, headers=to_client, reason=response.reason
            )
        )
        await self.to_client(h11.Data(data=body))
        await self.to_client(h11.EndOfMessage(), flush=True)
        return counts

    def record_response(
        self, base: dict[str, Any], time_us: int, started: float, status: int, **more: Any
    ) -> None:
        payload = {
            **base,
            "status": status,
            "duration_ms": round((time.monotonic() - started) * 1000, 3),
            "by": more.pop("by", "upstream"),
            **{k: v for k, v in more.items() if v not in (None, {}, "")},
        }
        self.io.record(Record("http.response", payload), time_us)

    # --- upgrades (WebSocket) -------------------------------------------------------------

    async def upgraded(
        self,
        response: h11.InformationalResponse,
        fields: headers.Headers,
        base: dict[str, Any],
        time_us: int,
        started: float,
    ) -> bool:
        assert self.up is not None
        up = self.up
        await self.to_client(
            h11.InformationalResponse(
                status_code=101,
                headers=[*headers.to_client(fields), (b"connection", b"upgrade")],
                reason=response.reason,
            ),
            flush=True,
        )
        self.record_response(
            base,
            time_us,
            started,
            101,
            response_headers=self.rules.for_record(fields),
        )
        client_rest, _ = self.client.trailing_data
        up_rest, _ = up.h11.trailing_data
        sent, received = await relay(self.io, up, client_rest, up_rest, self.options.body_limit)
        texts = {}
        counts: Counter[str] = Counter()
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
                    **base,
                    "client_bytes": sent.size,
                    "upstream_bytes": received.size,
                    "client_head": texts["client"],
                    "upstream_head": texts["upstream"],
                    "masked": dict(counts),
                },
            )
        )
        return False
