"""The http plugin's shell: a reverse proxy with HTTP/1.1 on both legs (docs/http.md).

`run_session(io)` is the http plugin's `run_session` (jitctl.plugin, custom shells). One tunnel
is one client connection, which may carry many requests (keep-alive, pipelined). For each:

1. the client's request is parsed (`readers`: httptools, i.e. llhttp); the path is made
   canonical and the target's rules decide (`jitctl_http.policy`), reading a JSON body first
   only when a rule asks for it;
2. a deny, a refused approval or an ambiguous path is answered here with a JSON body naming
   the rule and never reaches the upstream; a forwarded request is recorded as `http.request`,
   durably, before the upstream sees it (with `write_ahead = "changes"` only requests that can
   change something — anything but GET, HEAD, OPTIONS — wait for that);
3. the request goes upstream with the client's credentials dropped and the broker's injected
   (`jitctl_http.headers`); its body is streamed, never buffered whole;
4. the response is streamed back; only a response the target masks (JSON or text, with masks
   configured) is read whole first, up to `http.mask_limit` (beyond it: 502, fail closed);
5. `http.response` ends every exchange, forwarded or refused: the request's method, path,
   query, headers and decision, the status, timing, headers and bounded, masked body excerpts
   (one record per read keeps the trail's cost per request low; docs/audit-schema.md). It is
   a non-durable `Record`: nothing waits for it, unlike the write-ahead `http.request`.

Bytes for either side are written when the shell is about to wait for I/O, not once per
event: a response whose head and body arrived in one read leaves in one write (one tunnel
frame), and a stream still leaves as it arrives.

An `Upgrade` request (WebSocket) that the upstream accepts with 101 turns the connection into a
raw two-way relay; the first `body_limit` bytes each way are recorded, masked by detectors.

Modules: `events`, `readers` (bytes to events: httptools' callbacks and the limits, sans-I/O)
and `writers` (events to bytes: heads, body framing); `client` and `upstream` (the two legs,
over the tunnel and a socket); `proxy` (one client connection: the steps above), `responses`
(step 4), `relay` (upgraded connections), `trail` (the records). Decisions live in the pure
`jitctl_http` package.
"""

from __future__ import annotations

import ssl
from typing import Any

from jitctl.errors import ConfigError
from jitctl.gateway.http.proxy import Proxy, UnsafeCredential
from jitctl.gateway.http.upstream import Upstream, UpstreamConnection

__all__ = ["run_session"]


async def run_session(io: Any) -> None:
    target = io.context.target
    try:  # built and checked at broker start; a file gone since fails this session closed
        upstream = Upstream.for_target(target)
    except ConfigError as exc:
        await io.refuse("unavailable", f"{target.name}: {exc.message}")
        return
    try:
        first = await UpstreamConnection.open(upstream)
    except ssl.SSLCertVerificationError as exc:
        reason = f"the server's certificate did not verify: {exc.verify_message or exc}"
        await io.refuse("upstream", f"cannot reach {target.name} at {target.address}: {reason}")
        return
    except (OSError, TimeoutError) as exc:
        await io.refuse("upstream", f"cannot reach {target.name} at {target.address}: {exc}")
        return
    try:
        proxy = Proxy(io, upstream, first)
    except UnsafeCredential as exc:
        first.close()
        await io.refuse("unavailable", str(exc))
        return
    await io.start(first.tls_details())
    try:
        await proxy.run()
    except ConnectionError:
        io.end("the client closed the connection")
    finally:
        proxy.close()
