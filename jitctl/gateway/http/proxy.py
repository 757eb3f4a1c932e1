"""One client connection through the http shell: decide, then forward or refuse (see
jitctl.gateway.http for the order of things). The legs are `client.ClientConnection` and
`upstream.UpstreamConnection`; the upstream's answer goes back through `responses` (or
`relay.upgraded`); what is recorded is `trail.Trail`'s."""

from __future__ import annotations

import secrets
import time
from collections import Counter
from typing import Any

import jitctl_http.bodies as bodies
import jitctl_http.headers as headers
from jitctl.gateway.http import responses
from jitctl.gateway.http.client import ClientConnection
from jitctl.gateway.http.events import (
    END,
    Data,
    Framing,
    Headers,
    RemoteProtocolError,
    Request,
    Response,
)
from jitctl.gateway.http.relay import upgraded
from jitctl.gateway.http.trail import Exchange, Trail
from jitctl.gateway.http.upstream import Refusal, Upstream, UpstreamConnection
from jitctl.gateway.http.writers import safe_field
from jitctl.plugin import Hold
from jitctl_http.policy import AmbiguousPath, Decision, HttpPolicy, canonical_path

SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
# The one protocol after a 101 whose messages the gateway can read and mask (relay.py).
WEBSOCKET = b"websocket"
# RFC 7540 §3.2: a server that does not switch to h2c answers the request as though the
# `Upgrade` field were absent, so a client that offers h2c is served over HTTP/1.1 unharmed.
H2C = b"h2c"


class UnsafeCredential(ValueError):
    """The broker's credential cannot be sent in a header (a CR, LF or NUL in it)."""


class Proxy:
    def __init__(self, io: Any, upstream: Upstream, first: UpstreamConnection) -> None:
        self.io = io
        self.target = io.context.target
        self.options = self.target.http
        self.upstream = upstream
        self.prefix = upstream.prefix.encode()
        self.host = upstream.host_header  # the same for every request: worked out once
        self.up: UpstreamConnection | None = first
        self.client = ClientConnection(io)
        self.policy = HttpPolicy.from_target(self.target, io.context.groups)
        # Whether any rule looks into a request's body (when none does, no request is asked).
        self.body_rules = any(rule.body for rule in self.policy.rules)
        self.rules = headers.HeaderRules.of(self.options)
        credential = io.context.settings.get("credential", {})
        self.injected = headers.credential_header(self.options, credential)
        if self.injected is not None and not safe_field(*self.injected):
            raise UnsafeCredential(f"the credential for {self.target.name} is not a valid header")
        self.approvals = bool(io.context.settings.get("approvals"))
        masks: Any = None
        if any(m.columns or m.detectors for m in self.target.masks):
            from jitctl.masking import MaskPolicy

            masks = MaskPolicy.from_config(self.target.masks)
        self.masks = masks
        self.fields = bodies.field_names(self.target.masks)
        self.trail = Trail(io, self.rules, masks, self.fields)
        self.secrets = [
            v.encode("latin-1", "replace")
            for v in (credential.get("token"), credential.get("password"))
            if v
        ]
        if self.injected is not None:
            self.secrets.append(self.injected[1])
        self.scrub = bodies.Scrub(self.secrets)  # each response scrubs with a fresh() copy
        # A minted GCP token outlives no connection: past this, the connection is closed after
        # its current exchange, so the client's next one is a new session with a fresh token.
        self.renew_at = float(credential.get("expires_at") or 0) - 60

    def expiring(self) -> bool:
        """The injected token is about to expire: close after this exchange (see __init__)."""
        return self.renew_at > 0 and time.time() >= self.renew_at

    def close(self) -> None:
        if self.up is not None:
            self.up.close()

    async def run(self) -> None:
        client = self.client
        while True:
            try:
                event = await client.next_event()
                if type(event) is not Request or not await self.exchange(event):
                    return
            except RemoteProtocolError as exc:  # the client's; the upstream's become Refusals
                if not client.responded:
                    body = {"error": f"bad request: {exc}"}
                    await client.json_reply(exc.status, body, close=True)
                else:
                    await client.flush()
                return
            if not client.reusable or self.expiring():
                return
            client.start_next_cycle()

    # --- one request ----------------------------------------------------------------------

    async def exchange(self, request: Request) -> bool:
        """Decide, forward and record one request; False when the connection must end."""
        method = request.method.decode("ascii", "replace")  # llhttp's name: upper case
        raw_target = request.target.decode("latin-1")
        raw_path, _, query = raw_target.partition("?")
        fields = request.headers
        exchange = self.trail.start(method, query, fields)
        base = exchange.base
        early: list[bytes] = []
        complete = False
        if request.framing is Framing.NONE:  # llhttp ends a request without a body with its head
            complete = await self.client.next_event() is END
        try:
            path, _ = canonical_path(raw_target)  # the record keeps the query as sent
        except (AmbiguousPath, UnicodeDecodeError) as exc:
            base["path"] = self.trail.masked(raw_path)  # as sent: it has no canonical form
            decision = Decision("deny", "path", str(exc))
            return await self.refuse(exchange, decision, 400, complete)
        base["path"] = self.trail.masked(path)
        body = None
        if self.body_rules and self.policy.needs_body(method, path):
            if not complete:
                early, complete = await self.client.read_body(self.options.mask_limit)
            body = b"".join(early) if complete else None
        decision = self.policy.decide(method, path, body)
        unmaskable = self.unmaskable_upgrade(request)
        upstream_fields, dropped = self.rules.to_upstream(
            fields,
            self.host,
            self.injected,
            identity_encoding=self.masks is not None,
            upgrade_allowed=unmaskable is None,
        )
        base["decision"], base["rule"] = decision.action, decision.rule
        if dropped:
            base["client_credentials_dropped"] = dropped
        if unmaskable is not None and decision.action != "deny":
            base["upgrade_refused"] = unmaskable.decode("latin-1")
            if unmaskable.lower() != H2C:
                return await self.refuse_upgrade(exchange, unmaskable, complete)
        held: Hold | None = None
        if decision.action == "approve":
            held, decision = await self.approve(method, raw_target, decision)
            base["approval"] = decision.message
        if decision.action != "allow":
            return await self.refuse(exchange, decision, 403, complete)
        if self.options.write_ahead == "all" or method not in SAFE_METHODS:
            # Write-ahead (docs/security.md): on record before the upstream sees it.
            await self.trail.request(exchange)
        try:
            return await self.forward(request, upstream_fields, early, complete, exchange, held)
        except Refusal as refusal:
            self.drop_upstream()
            if self.client.responded:
                await self.client.flush()
                return False  # the response had started: all we can do is cut it
            self.trail.response(exchange, refusal.status, by="broker")
            await self.client.json_reply(refusal.status, refusal.body, close=True)
            return False

    def unmaskable_upgrade(self, request: Request) -> bytes | None:
        """The protocol `request` asks to switch to when this target masks and it is not
        WebSocket (the gateway could not mask what follows the 101); else None."""
        if not request.upgrade or self.masks is None:
            return None
        protocol = headers.header(request.headers, b"upgrade").strip()
        if not protocol or protocol.lower() == WEBSOCKET:  # no field: CONNECT, not an upgrade
            return None
        return protocol

    async def refuse_upgrade(self, exchange: Exchange, protocol: bytes, complete: bool) -> bool:
        """Answer 502 to an upgrade this target cannot mask; the upstream never sees it, and
        the client's connection goes on as HTTP/1.1 (RFC 9110 §7.8: no 101, no switch)."""
        name = protocol.decode("latin-1")
        error = (
            f"the gateway cannot mask protocol {name!r} on {self.target.name}, which has "
            "masks: only WebSocket upgrades are masked, so this one is not forwarded"
        )
        self.trail.response(exchange, 502, by="broker", message=error)
        body = {"error": error, "protocol": name, "target": self.target.name}
        await self.client.json_reply(502, body, close=not complete)
        return complete

    async def approve(
        self, method: str, raw_target: str, decision: Decision
    ) -> tuple[Hold | None, Decision]:
        """Hold the request for approval: the hold (to release once it went upstream) and
        the decision that replaces `approve`."""
        if not self.approvals:
            return None, Decision(
                "deny",
                decision.rule,
                "this request needs approval and this broker offers no approvals",
            )
        hold_id = secrets.token_hex(6)
        # An interim answer names the request, for a person watching (`curl -v`); clients skip
        # 1xx responses, and the final answer follows once the hold is decided.
        hint = f"jitctl request approve {hold_id}".encode()
        self.client.informational(102, [(b"x-jitctl-approval", hint)])
        await self.client.flush()
        held = Hold(
            hold_id,
            f"{method} {raw_target}",
            {"kind": "http.request", "rule": decision.rule, "reason": decision.message},
        )
        review = await self.io.hold(held)
        if review.approved:
            return held, Decision("allow", decision.rule, "approved")
        reason = f"approval {review.outcome}: {review.reason}"
        return None, Decision("deny", decision.rule, reason)

    async def refuse(
        self, exchange: Exchange, decision: Decision, status: int, complete: bool
    ) -> bool:
        """Answer a request the upstream never sees; the rest of its body is discarded."""
        if not complete:
            complete = self.client.discard_body()
        base = exchange.base
        body = {
            "error": "denied by policy" if status == 403 else "bad request",
            "rule": decision.rule,
            "message": decision.message,
            "method": base["method"],
            "path": base["path"],
            "target": self.target.name,
        }
        self.trail.response(
            exchange,
            status,
            by="broker",
            decision=decision.action,
            rule=decision.rule,
            message=decision.message,
        )
        await self.client.json_reply(status, body, close=not complete)
        return complete

    # --- the upstream leg -----------------------------------------------------------------

    def drop_upstream(self) -> None:
        if self.up is not None:
            self.up.close()
            self.up = None

    async def connection(self) -> UpstreamConnection:
        if self.up is not None and self.up.ready:
            return self.up
        self.drop_upstream()
        try:
            self.up = await UpstreamConnection.open(self.upstream)
        except (OSError, TimeoutError) as exc:
            raise Refusal(502, {"error": f"cannot reach {self.target.name}: {exc}"}) from None
        return self.up

    def check_switch(self, response: Response, exchange: Exchange) -> None:
        """Refuse (502) a 101 to a protocol this target cannot mask: an upstream that
        switches to one the request did not offer, or offered without the `Upgrade` field."""
        protocol = headers.header(response.headers, b"upgrade").strip()
        if self.masks is None or protocol.lower() == WEBSOCKET:
            return
        name = protocol.decode("latin-1")
        exchange.base["upgrade_refused"] = name
        error = (
            f"{self.target.name} switched to protocol {name!r}, which the gateway cannot "
            "mask: the connection is not relayed"
        )
        raise Refusal(502, {"error": error, "protocol": name, "target": self.target.name})

    async def forward(
        self,
        request: Request,
        upstream_fields: Headers,
        early: list[bytes],
        complete: bool,
        exchange: Exchange,
        held: Hold | None = None,
    ) -> bool:
        """Send the request upstream and its response back; an approved `held` request is
        released (`approval.executed`) once all of it has gone upstream."""
        up = await self.connection()
        sent = bodies.Capture(self.options.body_limit)
        failed = f"{self.target.name} failed"
        try:
            # What is here already (head, a body read early) leaves in one write; the rest of
            # a body is written as it arrives, one read at a time (memory stays bounded).
            target = self.prefix + request.target
            up.send_request(request.method, target, upstream_fields, request.framing)
            for chunk in early:
                sent.feed(chunk)
                up.send_data(chunk)
            while not complete:
                await up.flush()
                event = await self.client.next_event()
                if event is END:
                    break
                if type(event) is Data:
                    sent.feed(event.data)
                    up.send_data(event.data)
        except RemoteProtocolError:  # the client's request broke off: no use for the upstream
            self.drop_upstream()
            raise
        except OSError as exc:
            raise Refusal(502, {"error": f"{failed}: {exc}"}) from None
        try:
            up.end_request()
            await up.flush()
            if held is not None:
                await self.io.released(held)
            response = await up.next_event()
            while type(response) is Response and response.status_code < 200:
                if response.status_code == 101:  # the upgrade was accepted
                    self.check_switch(response, exchange)
                    limit, mask_limit = self.options.body_limit, self.options.mask_limit
                    await upgraded(
                        self.client,
                        up,
                        response,
                        self.trail,
                        exchange,
                        limit,
                        scrub=self.scrub,
                        mask_limit=mask_limit,
                    )
                    return False
                response = await up.next_event()
        except (OSError, RemoteProtocolError) as exc:
            raise Refusal(502, {"error": f"{failed}: {exc}"}) from None
        if type(response) is not Response:
            raise Refusal(502, {"error": f"{self.target.name} closed the connection"})
        fields = response.headers
        content_type = headers.header(fields, b"content-type")
        masked = (
            self.masks is not None
            and bodies.maskable(content_type)
            and request.method != b"HEAD"
            and response.status_code not in (204, 304)
        )
        if masked:  # a body masked on its way is read: it must not be encoded
            encoding = headers.header(fields, b"content-encoding").lower()
            if encoding not in (b"", b"identity"):
                error = "the upstream sent an encoded body the gateway masks"
                raise Refusal(502, {"error": error})
        received = bodies.Capture(self.options.body_limit)
        counts: Counter[str] = Counter()
        scrub, close = self.scrub.fresh(), self.expiring()
        try:
            if masked:
                counts = await responses.masked(
                    self.client,
                    up,
                    response,
                    scrub,
                    received,
                    close,
                    masks=self.masks,
                    fields=self.fields,
                    limit=self.options.mask_limit,
                )
            else:
                await responses.stream(self.client, up, response, scrub, received, close)
        except (OSError, RemoteProtocolError) as exc:
            raise Refusal(502, {"error": f"{failed}: {exc}"}) from None
        if scrub.found:  # the upstream echoed the broker's credential: replaced, and on record
            counts[bodies.SECRET_FOUND] += scrub.found
        if not up.ready:
            self.drop_upstream()
        request_type = headers.header(request.headers, b"content-type")
        self.trail.forwarded(
            exchange,
            response.status_code,
            fields,
            sent,
            received,
            (request_type, content_type),
            counts,
            masked,
        )
        return True
