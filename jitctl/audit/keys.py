"""The broker's Ed25519 audit signing key on disk, and the public keys a verifier trusts.

Rules:
- `<state_dir>/audit-signing.key`: PKCS#8 PEM, unencrypted, mode 0600 (the state dir itself is
  private); `<state_dir>/audit-signing.pub`: SubjectPublicKeyInfo PEM, safe to hand out.
- A key is created once and never silently replaced: two brokers racing to create it end up with
  the same key (link-based create), and an unreadable key file is an error, not a new key.
- `key_id` = first 16 hex digits of SHA-256 of the raw 32-byte public key.
- A trusted-key file holds PEM public keys, PEM private keys (their public half is used) or lines
  of base64 raw public keys; `#` starts a comment line.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import os
import re
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from jitctl.audit.errors import AuditUnavailable

KEY_FILE = "audit-signing.key"
PUB_FILE = "audit-signing.pub"
_PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z ]+)-----.*?-----END \1-----", re.S)


def key_id_of(public_raw: bytes) -> str:
    """A key's id: the first 16 hex digits of SHA-256 of its raw 32-byte public key."""
    return hashlib.sha256(public_raw).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class SigningKey:
    private: Ed25519PrivateKey
    public_raw: bytes
    key_id: str

    @classmethod
    def from_private(cls, private: Ed25519PrivateKey) -> SigningKey:
        raw = private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return cls(private=private, public_raw=raw, key_id=key_id_of(raw))

    @classmethod
    def generate(cls) -> SigningKey:
        return cls.from_private(Ed25519PrivateKey.generate())

    def sign(self, message: bytes) -> bytes:
        return self.private.sign(message)

    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def trusted(self) -> dict[str, bytes]:
        """This key as a trusted-key mapping (for verifying one's own trail)."""
        return {self.key_id: self.public_raw}


def load_signing_key(state_dir: str | Path) -> SigningKey:
    path = Path(state_dir) / KEY_FILE
    try:
        private = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except FileNotFoundError:
        raise AuditUnavailable(
            f"no audit signing key at {path}",
            "point --state-dir/--config at the broker's state directory",
        ) from None
    except (OSError, ValueError, TypeError) as exc:
        raise AuditUnavailable(f"cannot read the audit signing key {path}: {exc}") from None
    if not isinstance(private, Ed25519PrivateKey):
        raise AuditUnavailable(f"{path} is not an Ed25519 private key")
    return SigningKey.from_private(private)


def load_or_create_signing_key(state_dir: str | Path) -> SigningKey:
    """The key in `state_dir`, created (0600) on first use; also (re)writes the .pub file."""
    directory = Path(state_dir)
    path = directory / KEY_FILE
    if not path.exists():
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".audit-signing.")  # mode 0600
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(pem)
                handle.flush()
                os.fsync(handle.fileno())
            # link() fails if another process created the key first: then theirs wins.
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)
        finally:
            os.unlink(tmp)
    key = load_signing_key(directory)
    pub = directory / PUB_FILE
    if not pub.exists() or pub.read_bytes() != key.public_pem():
        pub.write_bytes(key.public_pem())
    return key


def trusted_keys_from(paths: Iterable[str | Path]) -> dict[str, bytes]:
    """key_id -> raw public key for every key in the given files."""
    keys: dict[str, bytes] = {}
    for path in paths:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise AuditUnavailable(f"cannot read trusted key file {path}: {exc}") from None
        for raw in _keys_in(text, str(path)):
            keys[key_id_of(raw)] = raw
    return keys


def _keys_in(text: str, source: str) -> list[bytes]:
    found: list[bytes] = []
    for match in _PEM_BLOCK.finditer(text):
        block = match.group(0).encode("ascii")
        try:
            if "PRIVATE" in match.group(1):
                private = serialization.load_pem_private_key(block, password=None)
                if isinstance(private, Ed25519PrivateKey):
                    found.append(SigningKey.from_private(private).public_raw)
                    continue
            else:
                public = serialization.load_pem_public_key(block)
                if isinstance(public, Ed25519PublicKey):
                    found.append(
                        public.public_bytes(
                            serialization.Encoding.Raw, serialization.PublicFormat.Raw
                        )
                    )
                    continue
        except (ValueError, TypeError):
            pass
        raise AuditUnavailable(f"{source}: a PEM block is not an Ed25519 key")
    rest = _PEM_BLOCK.sub("", text)
    for line in rest.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            raw = base64.b64decode(line, validate=True)
        except binascii.Error:
            raw = b""
        if len(raw) != 32:
            raise AuditUnavailable(f"{source}: {line[:40]!r} is not a base64 Ed25519 public key")
        found.append(raw)
    return found
