"""Where the CLI keeps its login, and how it turns that into a bearer token for each call.

Rules:
- One identity per broker URL. The OS keyring holds it (service "jitctl", username = broker URL,
  value = a small JSON document). `PYTHON_KEYRING_BACKEND` is honoured by keyring itself.
- No usable keyring (the fail backend, priority < 1, or a backend that raises): a 0600 file
  `$JITCTL_HOME/credentials.json` in a 0700 directory, written by atomic rename, and one warning
  line on stderr per process.
- Workload tokens are never copied: the store keeps only where they live
  ({"mode": "file", "path"} or {"mode": "env", "var"}) and re-reads them on every use, so a
  rotated file (a Kubernetes projected token) just works.
- `current_token()` refreshes an OIDC login when its token has expired or is within 30 s of it.
  Refresh tokens rotate, so two processes refreshing at once would trip reuse detection and lose
  the session; an flock serialises refreshes and the loser re-reads the winner's result.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from jitctl import paths
from jitctl.errors import AuthError, JitctlError

SERVICE = "jitctl"
SKEW = 30.0  # refresh this long before expiry
_warned = False


def write_private_json(path: Path, data: Any) -> None:
    """Write `data` to `path` as 0600 JSON in a 0700 directory, atomically (rename)."""
    paths.ensure_private_dir(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{time.monotonic_ns()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(data, out, indent=2, sort_keys=True)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def credentials_file() -> Path:
    return paths.home() / "credentials.json"


def _warn_file_fallback() -> None:
    global _warned
    if not _warned:
        _warned = True
        sys.stderr.write(
            f"warning: no system keyring available; keeping your login in {credentials_file()}"
            " (readable only by you)\n"
        )
        sys.stderr.flush()


def _keyring() -> Any | None:
    """The keyring backend when it is a real one, else None (use the file)."""
    import keyring
    from keyring.errors import KeyringError

    try:
        backend = keyring.get_keyring()
    except KeyringError:
        return None
    if getattr(backend, "priority", 0) < 1:
        return None
    return backend


class TokenStore:
    """The stored identity for one broker URL: keyring first, else the 0600 file."""

    def __init__(self, broker_url: str) -> None:
        self.broker_url = broker_url

    def _file_records(self) -> dict[str, Any]:
        try:
            data = json.loads(credentials_file().read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        records = data.get("identities") if isinstance(data, dict) else None
        return records if isinstance(records, dict) else {}

    def _file_write(self, records: dict[str, Any]) -> None:
        if records:
            write_private_json(credentials_file(), {"version": 1, "identities": records})
        else:
            with contextlib.suppress(FileNotFoundError):
                credentials_file().unlink()

    def load(self) -> dict[str, Any] | None:
        from keyring.errors import KeyringError

        backend = _keyring()
        if backend is not None:
            try:
                raw = backend.get_password(SERVICE, self.broker_url)
            except KeyringError:
                raw = None
            if raw:
                try:
                    record = json.loads(raw)
                except ValueError:
                    record = None
                if isinstance(record, dict):
                    return record
        record = self._file_records().get(self.broker_url)
        return record if isinstance(record, dict) else None

    def save(self, record: dict[str, Any]) -> str:
        """Store `record`; returns where it went ("keyring" or the file's path)."""
        from keyring.errors import KeyringError

        value = json.dumps(record, separators=(",", ":"), sort_keys=True)
        backend = _keyring()
        if backend is not None:
            try:
                backend.set_password(SERVICE, self.broker_url, value)
            except KeyringError:
                pass
            else:
                self._forget_file_copy()
                return "keyring"
        _warn_file_fallback()
        records = self._file_records()
        records[self.broker_url] = record
        self._file_write(records)
        return str(credentials_file())

    def _forget_file_copy(self) -> None:
        records = self._file_records()
        if records.pop(self.broker_url, None) is not None:
            self._file_write(records)

    def delete(self) -> bool:
        """Forget the identity everywhere; True when there was one."""
        from keyring.errors import KeyringError, PasswordDeleteError

        found = False
        backend = _keyring()
        if backend is not None:
            try:
                if backend.get_password(SERVICE, self.broker_url) is not None:
                    backend.delete_password(SERVICE, self.broker_url)
                    found = True
            except (KeyringError, PasswordDeleteError):
                pass
        if self.broker_url in self._file_records():
            self._forget_file_copy()
            found = True
        return found


# -- records ---------------------------------------------------------------------------------


def token_expiry(token: str, expires_in: Any = None) -> float:
    """When `token` expires: its `exp` claim if it is a JWT, else now + expires_in."""
    import jwt

    try:
        exp = jwt.decode(token, options={"verify_signature": False}).get("exp")
    except jwt.InvalidTokenError:
        exp = None
    if isinstance(exp, int | float):
        return float(exp)
    seconds = expires_in if isinstance(expires_in, int | float) else 300
    return time.time() + float(seconds)


def oidc_record(
    tokens: dict[str, Any],
    *,
    issuer: str,
    client_id: str,
    token_endpoint: str,
    previous: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The stored form of a token response (a refresh without a new refresh token keeps the old)."""
    bearer = tokens.get("id_token") or tokens.get("access_token")
    if not isinstance(bearer, str) or not bearer:
        raise AuthError("the identity provider answered without a token", "run `jitctl login`")
    refresh = tokens.get("refresh_token") or (previous or {}).get("refresh_token")
    return {
        "mode": "oidc",
        "issuer": issuer,
        "client_id": client_id,
        "token_endpoint": token_endpoint,
        "id_token": tokens.get("id_token"),
        "access_token": tokens.get("access_token"),
        "refresh_token": refresh,
        "expires_at": token_expiry(bearer, tokens.get("expires_in")),
    }


def bearer_of(record: dict[str, Any]) -> str:
    """The token to send: the ID token when there is one (aud = the CLI), else the access token."""
    return str(record.get("id_token") or record.get("access_token") or "")


def read_workload_token(record: dict[str, Any]) -> str:
    if record.get("mode") == "file":
        path = str(record.get("path", ""))
        try:
            token = Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise AuthError(
                f"cannot read the token file {path}: {exc.strerror or exc}",
                "check the file, or run `jitctl login --token-file PATH` again",
            ) from None
        if not token:
            raise AuthError(f"the token file {path} is empty", "check what writes it")
        return token
    var = str(record.get("var", ""))
    token = os.environ.get(var, "").strip()
    if not token:
        raise AuthError(
            f"the environment variable {var} holds no token",
            f"set {var}, or run `jitctl login` another way",
        )
    return token


@contextlib.contextmanager
def _refresh_lock() -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # Windows: no flock; concurrent refreshes are then the user's risk
        yield
        return
    lock = paths.ensure_private_dir(paths.home()) / ".refresh.lock"
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def refresh(record: dict[str, Any], ca_file: str | None) -> dict[str, Any]:
    """Redeem the refresh token (RFC 6749 §6); the answer's new refresh token replaces it."""
    from jitctl.client.api import http_client, reason_of, transport_errors

    endpoint = str(record["token_endpoint"])
    form = {
        "grant_type": "refresh_token",
        "refresh_token": record["refresh_token"],
        "client_id": record.get("client_id", ""),
    }
    with http_client(ca_file) as http, transport_errors(endpoint, "the identity provider"):
        response = http.post(endpoint, data=form, headers={"Accept": "application/json"})
    if not response.is_success:
        try:
            error = response.json().get("error")
        except (ValueError, AttributeError):
            error = None
        if error == "invalid_grant":
            raise AuthError(
                f"your session has expired ({reason_of(response)})", "run `jitctl login`"
            )
        raise JitctlError(
            f"refreshing your login failed: {response.status_code} {reason_of(response)}",
            "run `jitctl login`",
        )
    return oidc_record(
        response.json(),
        issuer=str(record.get("issuer", "")),
        client_id=str(record.get("client_id", "")),
        token_endpoint=endpoint,
        previous=record,
    )


def _fresh(record: dict[str, Any], now: float) -> bool:
    return bool(bearer_of(record)) and float(record.get("expires_at", 0)) - SKEW > now


def current_token(broker_url: str, ca_file: str | None = None) -> str:
    """A valid bearer token for `broker_url`, refreshed transparently; AuthError when none."""
    store = TokenStore(broker_url)
    record = store.load()
    if record is None:
        raise AuthError(f"you are not logged in to {broker_url}", "run `jitctl login`")
    if record.get("mode") in ("file", "env"):
        return read_workload_token(record)
    if _fresh(record, time.time()):
        return bearer_of(record)
    if not record.get("refresh_token"):
        raise AuthError("your session has expired", "run `jitctl login`")
    with _refresh_lock():
        latest = store.load() or record  # another process may have refreshed meanwhile
        if _fresh(latest, time.time()):
            return bearer_of(latest)
        updated = refresh(latest, ca_file)
        store.save(updated)
    return bearer_of(updated)
