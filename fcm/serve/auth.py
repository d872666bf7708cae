"""Bearer-token access: only the operator's edge devices get in.

The token comes from an environment variable or a file (never the command line, where ``ps`` would show it), is
printable ASCII (what an HTTP header carries unchanged) and is compared in constant time.
"""

from __future__ import annotations

import hmac
import os
from pathlib import Path

from fcm.errors import ConfigError

TOKEN_ENV = "FCM_SERVE_TOKEN"


def load_token(token_file: str | Path | None = None, env: str = TOKEN_ENV) -> str | None:
    """The token from ``token_file`` (first line, stripped) or ``$FCM_SERVE_TOKEN``; ``None``: no auth."""
    if token_file is not None:
        try:
            token = Path(token_file).read_text(encoding="utf-8").strip().splitlines()[0].strip()
        except (OSError, IndexError, UnicodeDecodeError) as e:
            raise ConfigError(f"cannot read a token from {token_file}: {e}") from None
    else:
        token = os.environ.get(env, "").strip()
        if not token:
            return None
    if len(token) < 16:
        raise ConfigError("the access token must have at least 16 characters")
    if len(token) > 4096 or not all("!" <= c <= "~" for c in token):
        # HTTP headers travel as Latin-1 bytes: a non-ASCII token would be accepted here and never match a client
        raise ConfigError("the access token must be at most 4096 printable ASCII characters (no spaces)")
    return token


def authorized(header: str | None, token: str | None) -> bool:
    """Whether an ``Authorization`` header carries ``Bearer <token>`` (always, without a token)."""
    if token is None:
        return True
    if not header or not header.startswith("Bearer "):
        return False
    return hmac.compare_digest(header[len("Bearer ") :].encode(), token.encode())
