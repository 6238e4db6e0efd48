"""Identifiers in AWS's formats, from `secrets`."""

from __future__ import annotations

import secrets
import string

LOWER_ALNUM = string.ascii_lowercase + string.digits
ALNUM = string.ascii_letters + string.digits


def random_id(length: int, alphabet: str = LOWER_ALNUM) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(length))


def rest_api_id() -> str:
    """v1 REST API id, e.g. `a1b2c3d4e5`."""
    return random_id(10)


def resource_id() -> str:
    """v1 resource id (10 lowercase alphanumerics)."""
    return random_id(10)


def api_id() -> str:
    """v2 `ApiId` (10 lowercase alphanumerics)."""
    return random_id(10)


def short_id() -> str:
    """v2 route / integration / stage / deployment / authorizer ids (7 lowercase alphanumerics)."""
    return random_id(7)


def api_key_id() -> str:
    """v1 API key id (10 alphanumerics)."""
    return random_id(10, ALNUM)


def api_key_value() -> str:
    """v1 API key value (40 alphanumerics)."""
    return random_id(40, ALNUM)
