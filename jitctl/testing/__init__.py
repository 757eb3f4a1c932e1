"""What tests share — ours and plugin authors': real processes, not mocks.

- `TokenIssuer` (jitctl.testing.issuer): an OIDC issuer on loopback that mints JWTs with chosen
  claims and keys, publishes discovery and JWKS, rotates keys, and counts JWKS fetches.
- `BrokerProcess` (jitctl.testing.broker): `jitctl broker serve` as a subprocess.
- `PostgresServer` (jitctl.testing.postgres): a throwaway PostgreSQL from the machine's binaries.
- `SshdServer` (jitctl.testing.sshd): OpenSSH's sshd on a high loopback port with its own host
  key, config and a client key pair in a temporary directory.
- `GcpEmulator` (jitctl.testing.gcp_emulator): GCP's STS and IAM Credentials on loopback, with a
  log of every token it issues naming the subject behind it.

Import the submodules directly; this package imports nothing heavy.
"""
