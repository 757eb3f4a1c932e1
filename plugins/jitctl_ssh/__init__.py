"""The ssh plugin: recorded shells, checked commands, audited file transfer (docs/ssh.md).

SSH cannot be a byte-level core: the broker must end the client's encryption to see anything.
So this plugin runs its own session (`run_session`, the plugin interface's custom-shell hook):
the gateway's paramiko shell (`jitctl.gateway.ssh`) terminates the client's SSH with the
gateway's host key, opens its own SSH connection to the host with the broker's credential, and
relays channel by channel through the pure cores of this package:

- `shellwords`, `shellquote`, `cmdline`: what an exec command line would run (shell syntax, `sh -c`,
  substitutions, wrappers);
- `policy`: rules, shells, sftp, uploads/downloads, forwarding -> `Decision`;
- `channel`: terminal and exec stream recording (`term.*`, `ssh.data`, `ssh.exit`);
- `sftp`, `sftp_framing`, `sftp_wire`, `hashing`: the SFTP relay (per-operation checks and
  records, content hashes in offset order);
- `scp`: the legacy scp protocol (per-file checks, records, hashes);
- `streammask`: masking a stream whose secrets may straddle reads;
- `events`: the records of requests (connection, shell, exec, subsystem, forwarding).

Cores import only the plugin interface and the standard library (STYLE.md); paramiko is
imported by the shell, and only when a session starts.
"""

from __future__ import annotations

from typing import Any

from jitctl.plugin import LocalProtocolError, SessionContext


class SshPlugin:
    name = "ssh"

    def new_core(self, context: SessionContext) -> Any:
        raise LocalProtocolError("the ssh plugin runs its own session shell (run_session)")

    async def run_session(self, io: Any) -> None:
        from jitctl.gateway.ssh import run_session

        await run_session(io)

    def validate_target(self, target: Any) -> None:
        """At broker start and in check-config: the target's masks must compile."""
        if any(mask.detectors for mask in target.masks):
            from jitctl.masking import MaskPolicy

            MaskPolicy.from_config(target.masks)

    def check_reply(self, target: Any, state_dir: Any) -> dict[str, Any]:
        """Added to the gateway's answer to `jitctl connect`'s check: the host key the client
        pins in the known_hosts file it writes."""
        from jitctl.gateway.ssh.hostkey import gateway_public_key

        return {"ssh_host_key": gateway_public_key(state_dir)}


plugin = SshPlugin()
