"""What one running broker holds: config, identity, the dev issuer, the audit writer.

The HTTP API and the tunnel gateway both read from one `Runtime`; nothing here does I/O on
its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jitctl.broker.identity import Verifier
from jitctl.config import BrokerConfig

if TYPE_CHECKING:
    from fastapi import FastAPI


@dataclass
class Runtime:
    config: BrokerConfig
    state_dir: Path
    verifier: Verifier
    dev: bool = False
    dev_issuer: Any = None  # jitctl.broker.devissuer.DevIssuer in --dev mode
    audit: Any = None  # jitctl.audit.AuditWriter once started
    public_url: str = ""
    broker_id: str = ""
    gateway: Any = None  # jitctl.gateway.tunnel.TunnelGateway
    approvals: Any = None  # jitctl.approvals.service.Approvals once started
    app_extensions: list[Any] = field(default_factory=list)

    def readiness_problem(self) -> str | None:
        if self.audit is not None and not getattr(self.audit, "healthy", True):
            return f"audit store unavailable: {getattr(self.audit, 'failed', 'unknown error')}"
        return None

    def login_info(self) -> dict[str, Any] | None:
        """The issuer interactive `jitctl login` should use."""
        if self.dev_issuer is not None:
            return {
                "issuer": self.dev_issuer.issuer_url,
                "client_id": self.dev_issuer.client_id,
                "scopes": ["openid", "email", "profile", "offline_access"],
            }
        wanted = self.config.broker.login_issuer
        for issuer in self.config.identity.issuers:
            if (wanted and issuer.issuer == wanted) or (not wanted and issuer.client_id):
                return {
                    "issuer": issuer.issuer,
                    "client_id": issuer.client_id or "jitctl",
                    "scopes": issuer.scopes,
                }
        return None

    def extend_app(self, app: FastAPI) -> None:
        for extension in self.app_extensions:
            extension(app, self)
