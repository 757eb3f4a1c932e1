"""What tests share — ours and plugin authors': real processes, not mocks.

- `TokenIssuer` (jitctl.testing.issuer): an OIDC issuer on loopback that mints JWTs with chosen
  claims and keys, publishes discovery and JWKS, rotates keys, and counts JWKS fetches.
- `BrokerProcess` (jitctl.testing.broker): `jitctl broker serve` as a subprocess.
- `PostgresServer` (jitctl.testing.postgres): a throwaway PostgreSQL from the machine's binaries.
- `GcpEmulator` (jitctl.testing.gcp_emulator): GCP's STS and IAM Credentials on loopback, with a
  log of every token it issues naming the subject behind it.

Import the submodules directly; this package imports nothing heavy.
"""
