"""The admin credentials: an access key id and secret that admin requests are signed with.

Precedence: an explicit `ID:SECRET` (`--admin-key` or the env var `PORTICO_ADMIN_KEY`), else the
file `<data-dir>/admin-key` (created on first start: mode 0600, whatever the data directory's mode;
0700 when it creates the directory). The secret is never printed or logged; callers show the
file's LOCATION only.
"""

from __future__ import annotations

import os
import secrets
import string
from pathlib import Path

from portico.control.store import PRIVATE_FILE_MODE, ensure_data_dir, make_private

ENV_ADMIN_KEY = "PORTICO_ADMIN_KEY"
KEY_FILE = "admin-key"
_UPPER_ALNUM = string.ascii_uppercase + string.digits
_SECRET_ALPHABET = string.ascii_letters + string.digits + "+/"


class AdminKeyError(ValueError):
    pass


def parse_admin_key(text: str) -> tuple[str, str]:
    """`ID:SECRET` -> (id, secret)."""
    access_key_id, sep, secret = text.strip().partition(":")
    if not sep or not access_key_id or not secret:
        raise AdminKeyError("an admin key must look like ACCESS_KEY_ID:SECRET")
    return access_key_id, secret


def generate_admin_key() -> tuple[str, str]:
    access_key_id = "AKIA" + "".join(secrets.choice(_UPPER_ALNUM) for _ in range(16))
    secret = "".join(secrets.choice(_SECRET_ALPHABET) for _ in range(40))
    return access_key_id, secret


def load_or_create_admin_key(
    data_dir: str | os.PathLike[str], configured: str | None = None
) -> tuple[str, str, Path | None]:
    """(access_key_id, secret, path of the key file or None when the key was configured)."""
    configured = configured or os.environ.get(ENV_ADMIN_KEY)
    if configured:
        return (*parse_admin_key(configured), None)
    path = ensure_data_dir(data_dir) / KEY_FILE
    make_private(path)  # a key file written looser by hand or by an older Portico
    try:
        return (*parse_admin_key(path.read_text()), path)
    except FileNotFoundError:
        pass
    access_key_id, secret = generate_admin_key()
    temp = path.with_name(f".{KEY_FILE}.{os.getpid()}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE_MODE)
    with os.fdopen(fd, "w") as handle:
        handle.write(f"{access_key_id}:{secret}\n")
        handle.flush()
        os.fsync(handle.fileno())
    try:
        os.link(temp, path)  # atomic, and never replaces a key another process wrote first
    except FileExistsError:
        pass
    finally:
        os.unlink(temp)
    return (*parse_admin_key(path.read_text()), path)
