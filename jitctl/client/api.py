"""The broker's HTTP API as the CLI sees it, and the HTTP plumbing the login code shares.

Rules:
- Short timeouts: a broker that does not answer in seconds is reported, not waited for.
- Transport failures become `UnreachableError` (exit 6) naming the URL; a certificate that does
  not verify says so. The hint says where a broker's URL and CA are set (`jitctl login`, or the
  environment): most commands take neither flag.
- 401 becomes `AuthError` (exit 3) with the broker's reason; 403 `DeniedError`; any other
  non-2xx a `JitctlError` with the reason from the body.
- A CA file *adds* to the usual trust store (certifi), so one file works for a broker with a
  private CA and an IdP with a public certificate alike.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Iterator
from typing import Any

import httpx

from jitctl.errors import AuthError, DeniedError, JitctlError, UnreachableError, UsageError

TIMEOUT = httpx.Timeout(10.0, connect=5.0)


def ssl_context(ca_file: str | None) -> ssl.SSLContext:
    import certifi

    context = ssl.create_default_context(cafile=certifi.where())
    if ca_file:
        try:
            context.load_verify_locations(cafile=ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise UsageError(
                f"cannot use the CA file {ca_file}: {exc}", "check the path given to --ca-file"
            ) from None
    return context


def http_client(ca_file: str | None, **kwargs: Any) -> httpx.Client:
    return httpx.Client(verify=ssl_context(ca_file), timeout=TIMEOUT, **kwargs)


def _is_tls_failure(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        seen = seen.__cause__ or seen.__context__
    return "CERTIFICATE_VERIFY_FAILED" in str(exc)


# Where a broker's URL and CA are set, for any command (most take neither flag themselves).
_BROKER_URL = "`jitctl login --broker URL` (or JITCTL_BROKER) sets the broker"
_BROKER_CA = (
    "`jitctl login --ca-file CA` (or JITCTL_CA_FILE) names the CA that signed it "
    "(a dev broker's is <state dir>/ca.pem)"
)


@contextlib.contextmanager
def transport_errors(url: str, what: str = "the broker") -> Iterator[None]:
    """Turn httpx transport failures into `UnreachableError` naming `url`."""
    broker = what == "the broker"
    try:
        yield
    except httpx.TimeoutException as exc:
        raise UnreachableError(
            f"cannot reach {what} at {url}: timed out ({type(exc).__name__})",
            f"is it running? {_BROKER_URL}" if broker else "check the URL and the network",
        ) from None
    except httpx.TransportError as exc:
        if _is_tls_failure(exc):
            raise UnreachableError(
                f"cannot reach {what} at {url}: its TLS certificate does not verify ({exc})",
                _BROKER_CA
                if broker
                else "it must verify against the system's CAs or `jitctl login --ca-file`",
            ) from None
        raise UnreachableError(
            f"cannot reach {what} at {url}: {exc or type(exc).__name__}",
            f"is it running? {_BROKER_URL}; `jitctl broker serve --dev` starts one"
            if broker
            else "check the URL and the network",
        ) from None


def reason_of(response: httpx.Response) -> str:
    """The human reason in an error body: ours (`reason`), OAuth's, or the raw text."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:300] or response.reason_phrase
    if isinstance(body, dict):
        for key in ("reason", "error_description", "detail", "error"):
            if isinstance(body.get(key), str) and body[key]:
                return str(body[key])
    return response.reason_phrase


class BrokerClient:
    """A thin client for the broker's /v1 API."""

    def __init__(self, url: str, ca_file: str | None = None) -> None:
        self.url = url.rstrip("/")
        self.ca_file = ca_file
        self._http = http_client(ca_file, base_url=self.url)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> BrokerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _get(self, path: str, token: str | None = None) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        with transport_errors(self.url):
            response = self._http.get(path, headers=headers)
        if response.status_code == 401:
            raise AuthError(
                f"the broker rejected your identity: {reason_of(response)}", "run `jitctl login`"
            )
        if response.status_code == 403:
            raise DeniedError(f"the broker said no: {reason_of(response)}")
        if not response.is_success:
            raise JitctlError(
                f"the broker answered {response.status_code} to {path}: {reason_of(response)}"
            )
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise JitctlError(
                f"{self.url}{path} did not answer with a JSON object",
                "is --broker the URL of a jitctl broker?",
            )
        return body

    def info(self) -> dict[str, Any]:
        return self._get("/v1/info")

    def whoami(self, token: str) -> dict[str, Any]:
        return self._get("/v1/whoami", token)

    def targets(self, token: str) -> list[dict[str, Any]]:
        return list(self._get("/v1/targets", token).get("targets", []))
