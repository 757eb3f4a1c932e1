"""Host keys: the gateway's own, pinned by clients; the host's, checked by the gateway."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import paramiko

from jitctl.client.ssh import pin_host_key, ssh_config_text, tunnel_environment
from jitctl.gateway.ssh.hostkey import check_host_key, gateway_public_key, load_gateway_key

KEY = paramiko.Ed25519Key.from_private_key_file
A = "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
B = "AAAAC3NzaC1lZDI1NTE5AAAAIDsQ5XX8J7aDjLYftdGw5RinFBpgRI0n78JVHybJvV/B"


def target(**ssh: object) -> SimpleNamespace:
    return SimpleNamespace(ssh=SimpleNamespace(**{"host_keys": [], "known_hosts": "", **ssh}))


def test_the_gateway_key_is_made_once_and_kept(tmp_path: Path) -> None:
    first = gateway_public_key(tmp_path)
    assert first.startswith("ssh-ed25519 ")
    assert gateway_public_key(tmp_path) == first
    assert (tmp_path / "ssh_host_ed25519_key").stat().st_mode & 0o077 == 0
    loaded = load_gateway_key(tmp_path)
    assert f"{loaded.get_name()} {loaded.get_base64()}" == first


def test_a_pinned_key_is_the_only_one_accepted(tmp_path: Path) -> None:
    pinned = target(host_keys=[f"ssh-ed25519 {A}"])
    assert check_host_key(pinned, tmp_path, "h", 22, "ssh-ed25519", A).ok
    verdict = check_host_key(pinned, tmp_path, "h", 22, "ssh-ed25519", B)
    assert not verdict.ok and "SHA256:" in verdict.reason


def test_first_use_keeps_the_key_and_refuses_a_different_one_later(tmp_path: Path) -> None:
    tofu = target()
    assert check_host_key(tofu, tmp_path, "10.0.0.7", 2222, "ssh-ed25519", A).how == "first use"
    assert (
        check_host_key(tofu, tmp_path, "10.0.0.7", 2222, "ssh-ed25519", A).how == "trusted before"
    )
    changed = check_host_key(tofu, tmp_path, "10.0.0.7", 2222, "ssh-ed25519", B)
    assert not changed.ok and "differs" in changed.reason
    assert check_host_key(tofu, tmp_path, "10.0.0.8", 2222, "ssh-ed25519", B).ok  # other host


def test_a_known_hosts_file_with_hashed_names_is_honoured(tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    hashed = paramiko.HostKeys.hash_host("[10.0.0.7]:2222")
    known.write_text(f"{hashed} ssh-ed25519 {A}\n")
    file_target = target(known_hosts=str(known))
    assert check_host_key(file_target, tmp_path, "10.0.0.7", 2222, "ssh-ed25519", A).ok
    assert not check_host_key(file_target, tmp_path, "10.0.0.7", 2222, "ssh-ed25519", B).ok
    missing = check_host_key(file_target, tmp_path, "10.0.0.9", 22, "ssh-ed25519", A)
    assert not missing.ok and "no entry" in missing.reason


def test_clients_pin_one_line_per_target_under_its_alias(tmp_path: Path) -> None:
    pin_host_key("web", f"ssh-ed25519 {A} comment", tmp_path)
    pin_host_key("db", f"ssh-ed25519 {B}", tmp_path)
    path = pin_host_key("web", f"ssh-ed25519 {B}", tmp_path)  # the broker's key changed
    assert sorted(path.read_text().splitlines()) == [
        f"jitctl.db ssh-ed25519 {B}",
        f"jitctl.web ssh-ed25519 {B}",
    ]


def test_the_ssh_config_pins_the_key_and_offers_no_credentials(tmp_path: Path) -> None:
    lines = ssh_config_text("web", 4242, tmp_path / "known_hosts").splitlines()
    assert lines[0] == "Host jitctl.web"
    for line in (
        "Port 4242",
        "HostKeyAlias jitctl.web",
        "StrictHostKeyChecking yes",
        "PubkeyAuthentication no",
        "PasswordAuthentication no",
        "ForwardAgent no",
    ):
        assert f"  {line}" in lines
    env, config = tunnel_environment("WEB", "web", 4242, f"ssh-ed25519 {A}", tmp_path)
    assert env == {"WEB_SSH_CONFIG": str(config), "WEB_SSH_HOST": "jitctl.web"}
    assert "Port 4242" in config.read_text()
