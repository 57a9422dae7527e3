"""Bearer-token authentication for the streamable HTTP transport."""

from __future__ import annotations

import hmac

from mcp.server.auth.provider import AccessToken, TokenVerifier
from mcp.server.auth.settings import AuthSettings
from pydantic import AnyHttpUrl

SCOPE = "tune"


class StaticTokenVerifier(TokenVerifier):
    """Accepts exactly one shared secret, compared in constant time."""

    def __init__(self, token: str) -> None:
        self._token = token.encode()

    async def verify_token(self, token: str) -> AccessToken | None:
        if hmac.compare_digest(token.encode(), self._token):
            return AccessToken(token=token, client_id="lumos-operator", scopes=[SCOPE])
        return None


def auth_settings(token: str, host: str, port: int) -> tuple[StaticTokenVerifier, AuthSettings]:
    """The verifier and settings ``MCPServer`` needs for bearer-token auth on ``host:port``."""
    shown = f"[{host}]" if ":" in host else host
    return StaticTokenVerifier(token), AuthSettings(
        issuer_url=AnyHttpUrl(f"http://{shown}:{port}"),  # required by the SDK; no OAuth server is offered
        resource_server_url=None,
        required_scopes=[SCOPE],
    )
