"""A throwaway OpenSSH `sshd` on a high loopback port, for tests, benchmarks and plugin authors.

    reason = sshd_available()                  # None when a server can be started here
    with SshdServer() as sshd:
        sshd.address                            # "127.0.0.1:<port>"
        sshd.user, sshd.client_key              # who may log in, with which private key (file)
        sshd.host_key_line                      # "ssh-ed25519 AAAA..." to pin the server
        sshd.ssh("echo hi")                     # run a command with the real `ssh` client
        sshd.log_text()                         # the server log (-e: everything on stderr)

Rules:
- Everything lives in one temporary directory: config, host key, a client key pair and its
  `authorized_keys`. Nothing in /etc is read or changed (`-f` names the config; the config names
  every file).
- The login user is the user running the tests. As root that is `root`, allowed with
  `PermitRootLogin prohibit-password` (keys only); sshd's privilege-separation directory
  `/run/sshd` is created if missing. Not as root, sshd can only log in its own user, which is
  exactly that user.
- `extra_config` lines are appended (for example `AllowTcpForwarding no`).
- `StrictModes no`: the key files live under /tmp, whose sticky, world-writable mode sshd would
  otherwise reject.
- No `sshd` or `ssh-keygen`: `SshdUnavailable` with the reason (`sshd_available()` says it
  without starting), so a caller can skip.
"""

from __future__ import annotations

import atexit
import contextlib
import getpass
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from jitctl.errors import JitctlError

SSHD_CANDIDATES = ("/usr/sbin/sshd", "/usr/local/sbin/sshd")


class SshdUnavailable(JitctlError):
    """No sshd can be started on this machine (the message says why)."""


def find_sshd() -> str | None:
    found = shutil.which("sshd")
    if found:
        return found
    return next((c for c in SSHD_CANDIDATES if os.access(c, os.X_OK)), None)


def sshd_available() -> str | None:
    """None when `SshdServer` can run here, else why not."""
    if find_sshd() is None:
        return "no sshd (apt-get install openssh-server)"
    for tool in ("ssh-keygen", "ssh"):
        if shutil.which(tool) is None:
            return f"no {tool} (apt-get install openssh-client)"
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _keygen(path: Path, comment: str) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        stdin=subprocess.DEVNULL,
    )


class SshdServer:
    def __init__(
        self,
        *,
        extra_config: Sequence[str] = (),
        startup_timeout: float = 10.0,
    ) -> None:
        reason = sshd_available()
        if reason:
            raise SshdUnavailable(reason)
        self.extra_config = list(extra_config)
        self.startup_timeout = startup_timeout
        self.dir = Path(tempfile.mkdtemp(prefix="jitctl-sshd-"))
        self.user = getpass.getuser()
        self.host_key = self.dir / "ssh_host_ed25519_key"
        self.client_key = self.dir / "client_ed25519"
        self.config_path = self.dir / "sshd_config"
        self.log_path = self.dir / "sshd.log"
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        _keygen(self.host_key, "jitctl-test-sshd")
        _keygen(self.client_key, "jitctl-test-client")
        shutil.copy(f"{self.client_key}.pub", self.dir / "authorized_keys")
        self.host_key_line = " ".join(
            Path(f"{self.host_key}.pub").read_text().split()[:2]
        )  # "ssh-ed25519 AAAA..." without the comment
        self.known_hosts = self.dir / "known_hosts"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _config(self) -> str:
        lines = [
            f"ListenAddress 127.0.0.1:{self.port}",
            f"HostKey {self.host_key}",
            f"AuthorizedKeysFile {self.dir / 'authorized_keys'}",
            f"PidFile {self.dir / 'sshd.pid'}",
            "PermitRootLogin prohibit-password",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "StrictModes no",
            "PrintMotd no",
            "PrintLastLog no",
            "UseDNS no",
            "LogLevel VERBOSE",
            "MaxStartups 200",
            "MaxSessions 100",
            "AcceptEnv LANG LC_*",
            "Subsystem sftp internal-sftp",
            *self.extra_config,
        ]
        return "\n".join(lines) + "\n"

    def start(self) -> SshdServer:
        sshd = find_sshd()
        assert sshd is not None
        if os.geteuid() == 0:
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        last = ""
        for _ in range(5):  # the free port can be taken between probing and binding
            self.port = _free_port()
            self.config_path.write_text(self._config())
            self.known_hosts.write_text(f"[127.0.0.1]:{self.port} {self.host_key_line}\n")
            log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child
            self.proc = subprocess.Popen(
                [sshd, "-D", "-e", "-f", str(self.config_path)],
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
            )
            log.close()
            if self._wait_listening():
                atexit.register(self.stop)
                return self
            last = self.log_text()[-2000:]
            self._kill()
        raise SshdUnavailable(f"sshd did not start:\n{last}")

    def _wait_listening(self) -> bool:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                return False
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock,
            ):
                if sock.recv(4) == b"SSH-":
                    return True
            time.sleep(0.05)
        return False

    def _kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def stop(self) -> None:
        self._kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> SshdServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def client_options(self) -> list[str]:
        """Options for OpenSSH clients (`ssh`, `scp`, `sftp`) logging in directly."""
        return [
            "-o", f"UserKnownHostsFile={self.known_hosts}",
            "-o", "StrictHostKeyChecking=yes",
            "-o", "GlobalKnownHostsFile=/dev/null",
            "-o", f"IdentityFile={self.client_key}",
            "-o", "IdentitiesOnly=yes",
            "-o", "BatchMode=yes",
            "-o", f"User={self.user}",
            "-F", "/dev/null",
        ]  # fmt: skip

    def ssh(self, command: str, *, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        """`ssh` straight to this server (no broker): for checks on the server side."""
        return subprocess.run(
            ["ssh", *self.client_options(), "-p", str(self.port), "127.0.0.1", command],
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
