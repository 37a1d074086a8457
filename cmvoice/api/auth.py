"""API keys: ``Authorization: Bearer <key>`` (or the page's cookie), checked in constant time."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from typing import Literal

from fastapi import Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CollectorRegistry, Counter

from cmvoice.api.problems import ApiProblem
from cmvoice.config import Settings
from cmvoice.errors import NOTHING, ConfigurationError, FieldError
from cmvoice.privacy import hidden_value

#: Cookie the login form sets, holding the key, for the campaign page (never for /v1).
API_KEY_COOKIE = "cmvoice_api_key"
#: The challenge of every 401.
BEARER_CHALLENGE = {"WWW-Authenticate": "Bearer"}
#: Why a request was refused: the label of ``cmvoice_api_unauthorized_total``.
RefusalReason = Literal["missing", "wrong"]

#: Shows the key field in the OpenAPI page ("Authorize"); checking is ``require_api_key``'s.
bearer_scheme = HTTPBearer(
    auto_error=False, description="One of the keys in CMVOICE_API_KEYS, as a bearer token."
)


def configured_keys(settings: Settings) -> list[str]:
    """The accepted keys; none configured is a configuration error, never an open API."""
    keys = settings.accepted_api_keys
    if not keys:
        raise ConfigurationError(
            "CMVOICE_API_KEYS: required by `cmvoice api`, which serves no request without a "
            "key (comma-separated; make one with "
            "python -c 'import secrets; print(secrets.token_urlsafe(32))')"
        )
    return keys


class ApiKeyCheck:
    """Compares an offered key with every configured key, in time independent of both.

    Keys are compared as SHA-256 digests with ``hmac.compare_digest``, and every key is
    compared, so neither a key's length nor which key matched shows in the time taken.
    """

    def __init__(self, keys: Sequence[str], registry: CollectorRegistry) -> None:
        if not keys:
            raise ConfigurationError("CMVOICE_API_KEYS: no key configured")
        self._digests = [_digest(key) for key in keys]
        self.refused = Counter(
            "cmvoice_api_unauthorized_total",
            "Requests refused for a missing or wrong API key, by reason",
            ["reason"],
            registry=registry,
        )

    def matches(self, offered: str) -> bool:
        digest = _digest(offered)
        found = False
        for key in self._digests:
            found |= hmac.compare_digest(digest, key)
        return found

    def refusal(self, offered: str | None) -> RefusalReason | None:
        """None when ``offered`` is a configured key; else why not, counted."""
        reason: RefusalReason | None = (
            "missing" if not offered else None if self.matches(offered) else "wrong"
        )
        if reason is not None:
            self.refused.labels(reason=reason).inc()
        return reason


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()


def key_check(request: Request) -> ApiKeyCheck:
    check: ApiKeyCheck = request.app.state.key_check
    return check


def unauthorized(reason: RefusalReason, offered: str | None) -> ApiProblem:
    """The 401 of a refused key: the value is never echoed."""
    if reason == "missing":
        error = FieldError(
            "Authorization", "an API key is required: Authorization: Bearer <key>", NOTHING
        )
    else:
        error = FieldError(
            "Authorization", "is not a key of CMVOICE_API_KEYS", hidden_value(offered or "")
        )
    return ApiProblem(401, [error], BEARER_CHALLENGE)


def require_api_key(
    request: Request,
    credentials: HTTPAuthorizationCredentials | None = Security(bearer_scheme),  # noqa: B008
) -> None:
    """Dependency of every /v1 endpoint: a configured key as a bearer token, or 401."""
    offered = credentials.credentials if credentials is not None else None
    reason = key_check(request).refusal(offered)
    if reason is not None:
        raise unauthorized(reason, offered)


def offered_page_key(request: Request) -> str | None:
    """The key a browser offers: a bearer token, else the login form's cookie."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return request.cookies.get(API_KEY_COOKIE) or None
