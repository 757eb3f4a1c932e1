"""The http plugin: a reverse proxy with the broker's credential injected (docs/http.md).

HTTP is proxied by a custom session shell (`run_session`, jitctl.plugin): the gateway's shell
(`jitctl.gateway.http`) parses both legs (httptools) and asks the pure modules of this package:

- `policy`: canonical paths and the rules (method, path, groups, JSON body fields) -> `Decision`;
- `headers`: what crosses (client credentials dropped, the broker's injected, hop-by-hop
  fields removed) and what the trail keeps (secrets redacted);
- `bodies`: bounded body capture for the trail, JSON/text masking of responses;
- `websocket`: a passive RFC 6455 reader of each direction of an upgraded WebSocket, whose
  messages the shell records.

Cores import only the standard library, `jitctl.masking` (itself pure) and wsproto (a sans-I/O
frame parser); the HTTP/1.1 parser and asyncio stay in the shell.
"""

from __future__ import annotations

from typing import Any

from jitctl.plugin import LocalProtocolError, SessionContext


class HttpPlugin:
    name = "http"

    def new_core(self, context: SessionContext) -> Any:
        raise LocalProtocolError("the http plugin runs its own session shell (run_session)")

    async def run_session(self, io: Any) -> None:
        from jitctl.gateway.http import run_session

        await run_session(io)

    def validate_target(self, target: Any) -> None:
        """At broker start and in check-config: the target's masks must compile and its TLS
        files (`http.tls_*`) load."""
        if target.masks:
            from jitctl.masking import MaskPolicy

            MaskPolicy.from_config(target.masks)
        from jitctl.gateway.http.upstream import Upstream

        Upstream.for_target(target)


plugin = HttpPlugin()
