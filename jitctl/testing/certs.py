"""Client certificates for tests of mutual TLS: a throwaway CA and one certificate it signed.

    ca, cert, key = client_certificate(tmp_path, "jitctl")   # PEM files; the key unencrypted

The server under test trusts `ca` for client certificates; the broker presents `cert`/`key`.
(Server certificates come from `jitctl.broker.tlsfiles.ensure_tls_files`.)
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path


def client_certificate(folder: Path, common_name: str = "jitctl") -> tuple[Path, Path, Path]:
    """(ca, cert, key) PEM files written in `folder`: `cert` names `common_name`."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "jitctl test client CA")])

    def signed(subject: x509.Name, public: ec.EllipticCurvePublicKey, ca: bool) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(ca_name)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            usage = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH])
            builder = builder.add_extension(usage, critical=False)
        return builder.sign(ca_key, hashes.SHA256())

    pem = serialization.Encoding.PEM
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    paths = folder / "client-ca.pem", folder / "client.pem", folder / "client-key.pem"
    paths[0].write_bytes(signed(ca_name, ca_key.public_key(), True).public_bytes(pem))
    paths[1].write_bytes(signed(subject, key.public_key(), False).public_bytes(pem))
    paths[2].write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return paths
