"""TLS material for the broker: a local CA and a server certificate, made once in the state dir.

A broker without `broker.tls_cert`/`broker.tls_key` makes its own CA (`ca.pem`) and a server
certificate for its listen address, 127.0.0.1, ::1 and localhost. Clients trust it with
`--ca-file <state_dir>/ca.pem` (automatic for a local dev broker). Keys are written 0600.

Rules for processes sharing a state dir (a second broker, `jitctl connect --local-tls`):
- Each file is replaced whole (`_write`), but the key and its certificate are two files
  replaced one after the other, so a reader can find the new key beside the old certificate
  for an instant. `server_context` reads such a pair again until it matches (`PAIR_SETTLE`)
  rather than fail; a pair that never matches is a ConfigError naming both files.
- Making or renewing the files happens under `.tls.lock`, and the need is decided again once
  the lock is held: two processes renewing at once would otherwise leave one's key beside the
  other's certificate (or one's CA beside a certificate the other's CA signed), for good.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import ipaddress
import os
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from jitctl.errors import ConfigError

CA_FILE = "ca.pem"
CERT_FILE = "server.pem"
KEY_FILE = "server-key.pem"
CA_KEY_FILE = "ca-key.pem"
LOCK_FILE = ".tls.lock"
PAIR_SETTLE = 1.0  # seconds `server_context` waits for a key and certificate to match


def _write(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Whole or not at all: a process loading the files while they are issued anew (another
    `jitctl connect --local-tls`) reads the old ones or the new ones, never half of one."""
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(partial, path)


def _write_private(path: Path, data: bytes) -> None:
    _write(path, data, 0o600)


RENEW_BEFORE = dt.timedelta(days=30)  # a server certificate closer to its end is issued anew
LEAF_DAYS = 825  # what browsers and most TLS stacks still accept for a server certificate
CA_DAYS = 3650


def ensure_tls_files(state_dir: Path, hosts: list[str]) -> tuple[Path, Path, Path]:
    """Return (ca, cert, key) paths in `state_dir`, creating them if missing.

    The server certificate is issued anew, by the same CA (so clients that trust `ca.pem` go on
    trusting it), when it ends within `RENEW_BEFORE` or does not name every host in `hosts` (the
    listen address changed): a broker restarted after two years, or moved to a new address,
    serves a certificate its clients accept. Only a CA of its own that is ending is replaced."""
    with _locked(state_dir / LOCK_FILE):
        return _ensure(state_dir, hosts)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Held across processes (flock); released when the descriptor closes, even on a crash.
    A folder that cannot take the lock file cannot take new TLS files either: nothing to guard."""
    try:
        fd: int | None = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        fd = None
    try:
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        if fd is not None:
            os.close(fd)


def _ensure(state_dir: Path, hosts: list[str]) -> tuple[Path, Path, Path]:
    from cryptography import x509

    ca_path, cert_path, key_path = state_dir / CA_FILE, state_dir / CERT_FILE, state_dir / KEY_FILE
    ca_key_path = state_dir / CA_KEY_FILE
    now = dt.datetime.now(dt.UTC)
    if ca_path.exists() and cert_path.exists() and key_path.exists():
        try:
            cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
            if cert.not_valid_after_utc - now > RENEW_BEFORE and _names(hosts) <= _sans(cert):
                return ca_path, cert_path, key_path
            if not ca_key_path.exists():
                return ca_path, cert_path, key_path  # not ours to reissue: the files are kept
            ca = x509.load_pem_x509_certificate(ca_path.read_bytes())
            if ca.not_valid_after_utc - now > RENEW_BEFORE:
                from cryptography.hazmat.primitives import serialization

                ca_key = serialization.load_pem_private_key(ca_key_path.read_bytes(), None)
                _issue(ca, ca_key, hosts, cert_path, key_path, now)
                return ca_path, cert_path, key_path
        except (OSError, ValueError, TypeError):
            # A file that does not read is left as it is, never replaced behind the operator's
            # back: loading it (`server_context`) then says which one and what to do.
            return ca_path, cert_path, key_path
    ca, ca_key = _new_ca(ca_path, ca_key_path, now)
    _issue(ca, ca_key, hosts, cert_path, key_path, now)
    return ca_path, cert_path, key_path


def _names(hosts: list[str]) -> set[Any]:
    from cryptography import x509

    names: set[Any] = set()
    for host in dict.fromkeys([*hosts, "127.0.0.1", "::1", "localhost"]):
        try:
            names.add(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.add(x509.DNSName(host))
    return names


def _sans(cert: Any) -> set[Any]:
    from cryptography import x509

    try:
        extension = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return set()
    return set(extension.value)


def _new_ca(ca_path: Path, ca_key_path: Path, now: dt.datetime) -> tuple[Any, Any]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "jitctl local broker CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    _write_private(
        ca_key_path,
        ca_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
    )
    _write(ca_path, ca_cert.public_bytes(pem))
    return ca_cert, ca_key


def _issue(
    ca_cert: Any, ca_key: Any, hosts: list[str], cert_path: Path, key_path: Path, now: dt.datetime
) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "jitctl broker")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(min(now + dt.timedelta(days=LEAF_DAYS), ca_cert.not_valid_after_utc))
        .add_extension(x509.SubjectAlternativeName(sorted(_names(hosts), key=str)), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    _write_private(
        key_path,
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
    )
    _write(cert_path, cert.public_bytes(pem) + ca_cert.public_bytes(pem))


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    """A server context serving `cert` with `key`. A key that is not the certificate's is read
    again for up to `PAIR_SETTLE` seconds: it may be the new key of a pair being issued anew
    (see the module's rules). OpenSSL itself never loads a mismatched pair."""
    deadline = time.monotonic() + PAIR_SETTLE
    while True:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            ctx.load_cert_chain(cert, key)
            return ctx
        except ssl.SSLError as exc:
            if not _mismatch(exc):
                raise _unloadable(cert, key, exc) from None
            if time.monotonic() >= deadline:
                raise ConfigError(
                    f"the broker's TLS key {key} is not the key of its certificate {cert}",
                    "check broker.tls_cert and broker.tls_key: they must be a pair",
                ) from None
            time.sleep(0.05)
        except OSError as exc:
            raise _unloadable(cert, key, exc) from None


def _mismatch(exc: ssl.SSLError) -> bool:
    return exc.reason == "KEY_VALUES_MISMATCH" or "key values mismatch" in str(exc)


def _unloadable(cert: Path, key: Path, exc: Exception) -> ConfigError:
    return ConfigError(
        f"cannot load the broker's TLS certificate {cert} / key {key}: {exc}",
        "check broker.tls_cert and broker.tls_key",
    )


def client_context(ca_file: str | Path | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def upstream_context(
    keys: str,
    *,
    ca_file: str = "",
    cert_file: str = "",
    key_file: str = "",
    check_chain: bool = True,
    check_name: bool = True,
) -> ssl.SSLContext:
    """The broker as a TLS client of an upstream: the chain checked against `ca_file` (else the
    system's CAs) unless `check_chain` is off, the host name unless `check_name` is off, and a
    client certificate if one is given. Raises ConfigError naming `keys` (the target's
    settings, e.g. "postgres.tls_* files") for a file that does not load. Build it once per
    target: loading CAs costs milliseconds, too much for every connection."""
    try:
        ctx = ssl.create_default_context(cafile=ca_file or None)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if not check_chain:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        elif not check_name:
            ctx.check_hostname = False
        if cert_file:
            ctx.load_cert_chain(cert_file, key_file or None)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"{keys} do not load: {exc}", "check the paths, and that the broker may read them"
        ) from None
    return ctx
