"""What tests share — ours and plugin authors': real processes, not mocks.

- `TokenIssuer` (jitctl.testing.issuer): an OIDC issuer on loopback that mints JWTs with chosen
  claims and keys, publishes discovery and JWKS, rotates keys, and counts JWKS fetches.
- `BrokerProcess` (jitctl.testing.broker): `jitctl broker serve` as a subprocess; its
  `tunnel(target)` is a `jitctl connect` that a `with` block ends with Ctrl-C.
- `PostgresServer` (jitctl.testing.postgres): a throwaway PostgreSQL from the machine's binaries.
- `postgres_broker`, `tunnel_dsn` (jitctl.testing.postgres_broker): a broker whose config names
  such a server and holds its password, and the passwordless DSN a client uses through a tunnel.
- `SshdServer` (jitctl.testing.sshd): OpenSSH's sshd on a high loopback port with its own host
  key, config and a client key pair in a temporary directory.
- `GcpEmulator` (jitctl.testing.gcp_emulator): GCP's STS and IAM Credentials on loopback, with a
  log of every token it issues naming the subject behind it.

Import the submodules directly; this package imports nothing heavy.
"""
