"""In-band TLS to the upstream (Postgres's SSLRequest): ask, read the one-byte answer, start TLS.

Rules:
- The answer must be one byte and come alone. Bytes that arrive with it, or after it before
  the handshake, were sent in the clear where anyone on the path could have written them
  (CVE-2021-23222, "buffer stuffing" against libpq): the session is refused.
- A server that declines is used over plain TCP only when the plugin's spec allows it
  (`required` false: Postgres's "prefer"); otherwise the session is refused and says so.
- A certificate that does not verify refuses the session with the TLS library's reason.
- What happened goes into `session.start` (`upstream_tls`: the mode and the TLS version, null
  when the server declined), so the trail shows which sessions crossed the network in the clear.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from typing import Any, TypeVar

from jitctl.plugin import StartTls

P = TypeVar("P", bound=asyncio.Protocol)

TIMEOUT = 10.0  # seconds for the dial, the answer and the handshake, each


class UpstreamTlsError(Exception):
    """The upstream could not be reached as the target's TLS setting asks (message says why)."""


class _Answer(asyncio.Protocol):
    """Collects the upstream's answer to the request (and anything after it)."""

    def __init__(self) -> None:
        self.answer: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.extra = b""

    def data_received(self, data: bytes) -> None:
        if self.answer.done():
            self.extra += data
        else:
            self.answer.set_result(data)

    def eof_received(self) -> bool:
        self._gone(None)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._gone(exc)

    def _gone(self, exc: Exception | None) -> None:
        if not self.answer.done():
            reason = f": {exc}" if exc else ""
            self.answer.set_exception(UpstreamTlsError(f"the server closed the connection{reason}"))


async def open_upstream(
    host: str, port: int, spec: StartTls, factory: Callable[[], P]
) -> tuple[asyncio.Transport, P, dict[str, Any]]:
    """Dial, negotiate as `spec` says, and hand the connection to `factory()`'s protocol.

    Returns (transport, protocol, what `session.start` records). Raises OSError or
    TimeoutError for the dial, UpstreamTlsError for the rest."""
    loop = asyncio.get_running_loop()
    transport, asking = await asyncio.wait_for(
        loop.create_connection(_Answer, host, port), timeout=TIMEOUT
    )
    try:
        transport.write(spec.request)
        try:
            answer = await asyncio.wait_for(asking.answer, timeout=TIMEOUT)
        except TimeoutError:
            raise UpstreamTlsError(
                f"the server did not answer the TLS request within {TIMEOUT:.0f} seconds"
            ) from None
        if len(answer) > 1 or asking.extra:
            raise UpstreamTlsError(
                "the server sent data along with its answer to the TLS request, before any "
                "encryption (possible man-in-the-middle); refusing the connection"
            )
        protocol = factory()
        if answer == spec.declined:
            if spec.required:
                raise UpstreamTlsError(
                    f"the server does not offer TLS, and the target's tls is {spec.mode!r}"
                )
            transport.set_protocol(protocol)
            protocol.connection_made(transport)
            return transport, protocol, {"mode": spec.mode, "version": None}
        if answer != spec.accepted:
            raise UpstreamTlsError(f"unexpected answer {answer!r} to the TLS request")
        try:
            secured = await loop.start_tls(
                transport,
                protocol,
                spec.context,
                server_hostname=spec.server_hostname,
                ssl_handshake_timeout=TIMEOUT,
            )
        except ssl.SSLCertVerificationError as exc:
            raise UpstreamTlsError(
                f"the server's certificate did not verify: {exc.verify_message or exc}"
            ) from None
        except (ssl.SSLError, ConnectionError, TimeoutError) as exc:
            reason = str(exc) or type(exc).__name__
            raise UpstreamTlsError(f"the TLS handshake failed: {reason}") from None
        if secured is None:  # the loop closed it under us
            raise UpstreamTlsError("the connection closed during the TLS handshake")
        protocol.connection_made(secured)
        secret = secured.get_extra_info("ssl_object")
        version = secret.version() if secret is not None else None
        return secured, protocol, {"mode": spec.mode, "version": version}
    except BaseException:
        transport.close()
        raise
