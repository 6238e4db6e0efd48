"""The admin key, handed to the serving workers without the environment.

The workers verify the SigV4 signatures of `AWS_IAM` routes, and the admin key signs as the root of
the gateway's account, so they need its secret. The environment would hand it to every handler,
plugin and subprocess; instead the server process writes it into an anonymous in-memory file
(`memfd_create`, close-on-exec: an `exec`ed program never inherits it) that the workers, forked
from the server process, inherit. Only the descriptor's number travels in the environment. A
worker reads the key once, then closes its descriptor and forgets the number; the server process
keeps its own for the workers it starts later.
"""

from __future__ import annotations

import contextlib
import os
import tempfile

from portico.control.keys import AdminKeyError, parse_admin_key

__all__ = ["ENV_ADMIN_KEY_FD", "share", "take"]

ENV_ADMIN_KEY_FD = "PORTICO_ADMIN_KEY_FD"


def share(access_key_id: str, secret: str) -> int:
    """Make the key available to workers started from now on; returns the descriptor."""
    data = f"{access_key_id}:{secret}".encode()
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("portico-admin-key", os.MFD_CLOEXEC)
    else:  # an unlinked file of our own (mode 0600), where there is no memfd
        with tempfile.TemporaryFile() as handle:
            fd = os.dup(handle.fileno())
        os.set_inheritable(fd, False)
    written = 0
    while written < len(data):
        written += os.pwrite(fd, data[written:], written)
    previous = os.environ.get(ENV_ADMIN_KEY_FD)
    os.environ[ENV_ADMIN_KEY_FD] = str(fd)
    if previous and previous.isdigit():
        with contextlib.suppress(OSError):
            os.close(int(previous))
    return fd


def take() -> tuple[str, str] | None:
    """In a worker: the admin key (access key id, secret) shared by the server process, or None.
    The descriptor is closed and its number removed from the environment."""
    text = os.environ.pop(ENV_ADMIN_KEY_FD, None)
    if not text or not text.isdigit():
        return None
    fd = int(text)
    try:
        data = os.pread(fd, 64 * 1024, 0)
    except OSError:
        return None
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)
    try:
        return parse_admin_key(data.decode())
    except (AdminKeyError, UnicodeDecodeError):
        return None
