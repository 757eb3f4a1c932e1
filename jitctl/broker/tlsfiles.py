"""TLS material for the broker: a local CA and a server certificate, made once in the state dir.

A broker without `broker.tls_cert`/`broker.tls_key` makes its own CA (`ca.pem`) and a server
certificate for its listen address, 127.0.0.1, ::1 and localhost. Clients trust it with
`--ca-file <state_dir>/ca.pem` (automatic for a local dev broker). Keys are written 0600.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import ssl
from pathlib import Path

from jitctl.errors import ConfigError

CA_FILE = "ca.pem"
CERT_FILE = "server.pem"
KEY_FILE = "server-key.pem"


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def ensure_tls_files(state_dir: Path, hosts: list[str]) -> tuple[Path, Path, Path]:
    """Return (ca, cert, key) paths in `state_dir`, creating them if missing."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    ca_path, cert_path, key_path = state_dir / CA_FILE, state_dir / CERT_FILE, state_dir / KEY_FILE
    if ca_path.exists() and cert_path.exists() and key_path.exists():
        return ca_path, cert_path, key_path
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "jitctl local broker CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    for host in dict.fromkeys([*hosts, "127.0.0.1", "::1", "localhost"]):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "jitctl broker")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=825))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    _write_private(
        key_path,
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
    )
    _write_private(
        state_dir / "ca-key.pem",
        ca_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
    )
    cert_path.write_bytes(cert.public_bytes(pem) + ca_cert.public_bytes(pem))
    ca_path.write_bytes(ca_cert.public_bytes(pem))
    return ca_path, cert_path, key_path


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"cannot load the broker's TLS certificate {cert} / key {key}: {exc}",
            "check broker.tls_cert and broker.tls_key",
        ) from None
    return ctx


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
