"""The broker's own TLS files: made once, the server certificate issued anew when it must be."""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import ssl
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from jitctl.broker import tlsfiles
from jitctl.broker.tlsfiles import client_context, ensure_tls_files, server_context
from jitctl.errors import ConfigError


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())  # the first: the server's


def _ips(cert: x509.Certificate) -> set[str]:
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)}


def _issued_by(cert: x509.Certificate, ca_path: Path) -> bool:
    try:
        cert.verify_directly_issued_by(_cert(ca_path))
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def _replace_with_ending_cert(folder: Path, days_left: int) -> None:
    """A server certificate signed by the folder's CA that ends in `days_left` days."""
    ca = _cert(folder / "ca.pem")
    ca_key = serialization.load_pem_private_key((folder / "ca-key.pem").read_bytes(), None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "jitctl broker")]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=800))
        .not_valid_after(now + dt.timedelta(days=days_left))
        .add_extension(
            x509.SubjectAlternativeName(  # what ensure_tls_files names for 127.0.0.1
                [
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.IPAddress(ipaddress.ip_address("::1")),
                    x509.DNSName("localhost"),
                ]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    (folder / "server.pem").write_bytes(cert.public_bytes(pem) + ca.public_bytes(pem))
    (folder / "server-key.pem").write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )


def test_files_are_made_once_and_kept_while_they_serve(tmp_path: Path) -> None:
    ca, cert, key = ensure_tls_files(tmp_path, ["127.0.0.1"])
    assert _ips(_cert(cert)) == {"127.0.0.1", "::1"}
    assert _issued_by(_cert(cert), ca)
    assert (key.stat().st_mode & 0o777) == 0o600
    assert ((tmp_path / "ca-key.pem").stat().st_mode & 0o777) == 0o600
    before = {path: path.read_bytes() for path in (ca, cert, key)}
    assert ensure_tls_files(tmp_path, ["127.0.0.1"]) == (ca, cert, key)
    assert {path: path.read_bytes() for path in (ca, cert, key)} == before


def test_a_new_listen_address_gets_a_certificate_naming_it_from_the_same_ca(
    tmp_path: Path,
) -> None:
    ca, cert, _ = ensure_tls_files(tmp_path, ["127.0.0.1"])
    ca_before = ca.read_bytes()
    ensure_tls_files(tmp_path, ["10.1.2.3"])
    assert "10.1.2.3" in _ips(_cert(cert))
    assert ca.read_bytes() == ca_before  # clients that trust ca.pem go on trusting it
    assert _issued_by(_cert(cert), ca)


def test_a_server_certificate_near_its_end_is_issued_anew(tmp_path: Path) -> None:
    ca, cert, key = ensure_tls_files(tmp_path, ["127.0.0.1"])
    ca_before = ca.read_bytes()
    _replace_with_ending_cert(tmp_path, days_left=10)
    old_key = key.read_bytes()
    ensure_tls_files(tmp_path, ["127.0.0.1"])
    renewed = _cert(cert)
    assert renewed.not_valid_after_utc - dt.datetime.now(dt.UTC) > dt.timedelta(days=800)
    assert key.read_bytes() != old_key
    assert ca.read_bytes() == ca_before and _issued_by(renewed, ca)


def test_a_certificate_with_time_left_is_not_touched(tmp_path: Path) -> None:
    ensure_tls_files(tmp_path, ["127.0.0.1"])
    _replace_with_ending_cert(tmp_path, days_left=60)
    before = (tmp_path / "server.pem").read_bytes()
    ensure_tls_files(tmp_path, ["127.0.0.1"])
    assert (tmp_path / "server.pem").read_bytes() == before


def test_files_without_the_ca_key_are_kept_as_they_are(tmp_path: Path) -> None:
    ensure_tls_files(tmp_path, ["127.0.0.1"])
    _replace_with_ending_cert(tmp_path, days_left=10)
    (tmp_path / "ca-key.pem").unlink()  # not made here: not ours to reissue
    before = (tmp_path / "server.pem").read_bytes()
    ensure_tls_files(tmp_path, ["127.0.0.1"])
    assert (tmp_path / "server.pem").read_bytes() == before


def test_a_damaged_file_is_kept_and_loading_it_says_which(tmp_path: Path) -> None:
    ca, cert, key = ensure_tls_files(tmp_path, ["127.0.0.1"])
    cert.write_text("not a certificate")
    assert ensure_tls_files(tmp_path, ["10.1.2.3"]) == (ca, cert, key)
    assert cert.read_text() == "not a certificate"  # not replaced behind the operator's back
    with pytest.raises(ConfigError, match=r"server\.pem"):
        server_context(cert, key)


def _served(ctx: ssl.SSLContext, ca: Path) -> x509.Certificate:
    """The certificate a client trusting `ca` is shown by a server on `ctx` (in memory)."""
    to_server, to_client = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = client_context(ca).wrap_bio(to_client, to_server, server_hostname="localhost")
    server = ctx.wrap_bio(to_server, to_client, server_side=True)
    for _ in range(5):
        for side in (client, server):
            with contextlib.suppress(ssl.SSLWantReadError):
                side.do_handshake()
    der = client.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def _half_renewed(folder: Path) -> bytes:
    """Renew the pair, then put the old certificate back: the new key beside the old
    certificate, as a reader finds them between the two replacements. Returns the new one."""
    ensure_tls_files(folder, ["127.0.0.1"])
    old_cert = (folder / "server.pem").read_bytes()
    ensure_tls_files(folder, ["10.1.2.3"])  # a new listen address: a new key and certificate
    new_cert = (folder / "server.pem").read_bytes()
    (folder / "server.pem").write_bytes(old_cert)
    return new_cert


def test_a_reader_between_the_key_and_the_certificate_waits_for_the_certificate(
    tmp_path: Path,
) -> None:
    """A second broker or `connect --local-tls` starting mid-renewal serves the new pair."""
    new_cert = _half_renewed(tmp_path)
    cert, key = tmp_path / "server.pem", tmp_path / "server-key.pem"
    writer = threading.Timer(0.2, cert.write_bytes, [new_cert])  # the renewal's second step
    writer.start()
    try:
        ctx = server_context(cert, key)
    finally:
        writer.join()
    assert _served(ctx, tmp_path / "ca.pem") == x509.load_pem_x509_certificate(new_cert)


def test_a_key_that_never_matches_its_certificate_names_both(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _half_renewed(tmp_path)
    monkeypatch.setattr(tlsfiles, "PAIR_SETTLE", 0.1)
    with pytest.raises(ConfigError, match=r"server-key\.pem is not the key of .*server\.pem"):
        server_context(tmp_path / "server.pem", tmp_path / "server-key.pem")


def test_two_renewals_at_once_leave_one_matching_pair(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second process renews while the first has written its key but not yet its
    certificate: the files end as one pair, not one's key beside the other's certificate."""
    ca, cert, key = ensure_tls_files(tmp_path, ["127.0.0.1"])
    write = tlsfiles._write
    second: list[threading.Thread] = []

    def write_then_race(path: Path, data: bytes, mode: int = 0o644) -> None:
        write(path, data, mode)
        if path == key and not second:
            second.append(threading.Thread(target=ensure_tls_files, args=(tmp_path, ["10.1.2.3"])))
            second[0].start()
            second[0].join(0.5)  # it runs to its end here unless something holds it back

    monkeypatch.setattr(tlsfiles, "_write", write_then_race)
    ensure_tls_files(tmp_path, ["10.1.2.3"])
    second[0].join()
    monkeypatch.setattr(tlsfiles, "PAIR_SETTLE", 0.0)
    served = _served(server_context(cert, key), ca)
    assert served == _cert(cert) and "10.1.2.3" in _ips(served)
