"""The one error the development issuer's grants raise: an RFC 6749 §5.2 error response.

Its `error` code and `description` become the JSON body (`error`, `error_description`) of the
token endpoint, or the query of the redirect back to the client; `status` is the HTTP status.
"""

from __future__ import annotations


class OAuthError(Exception):
    """An RFC 6749 §5.2 error response."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error, self.description, self.status = error, description, status
