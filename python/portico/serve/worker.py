"""The app factory Granian calls in each worker process.

The CLI validates the configuration once in the main process, then hands its location (and the
`--function` declarations and shared-bucket file) to the workers through the environment: workers
are separate processes and build their own runtimes, never sharing Python objects.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sys
import threading
import time

from portico import _core
from portico.config.models import Config
from portico.control.keys import ENV_ADMIN_KEY
from portico.dataplane.app import SHUTDOWN_GRACE_SECONDS, DataPlane
from portico.dataplane.build import build_dataplane
from portico.dataplane.plugins import load_plugins
from portico.serve import admin_principal

ENV_CONFIG = "PORTICO_CONFIG"
ENV_FUNCTIONS = "PORTICO_FUNCTIONS"
ENV_SHARED_BUCKETS = "PORTICO_SHARED_BUCKETS"
# The usage plans' counters (`rust/usage.rs`), shared like the buckets.
ENV_SHARED_USAGE = "PORTICO_SHARED_USAGE"
# Without the admin API: the data directory whose durable usage counts the config's plans go on from.
ENV_USAGE_DIR = "PORTICO_USAGE_DIR"
ENV_PLUGINS = "PORTICO_PLUGINS"
# Cluster mode (JSON: url, fail, timeout_ms): the Redis the nodes share their limits through.
ENV_REDIS = "PORTICO_REDIS"
# The control plane's data directory: set (by `portico serve --admin-port`) when the workers also
# serve the admin-created APIs and follow their changes live.
ENV_DATA_DIR = "PORTICO_DATA_DIR"
# Set (JSON: listener_fd, and tls: the files of `Core.listen`) when each worker's core serves the
# public port with its edge: it accepts from the inherited listening socket `listener_fd`;
# relay_dir: where the workers' WebSocket relay sockets live (`@connections` across workers).
ENV_EDGE = "PORTICO_EDGE"
# Without the edge: where the workers' WebSocket relay sockets live.
ENV_RELAY_DIR = "PORTICO_RELAY_DIR"


def _die_with_parent() -> None:
    """A worker outlives no `portico serve`: if the server process is killed (even with SIGKILL),
    the kernel sends its workers SIGTERM, and they stop as on a normal shutdown."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)
    parent = os.getppid()
    if parent == 1:  # the server died before the line above
        os.kill(os.getpid(), signal.SIGTERM)
    watch = threading.Thread(target=_exit_if_orphaned, args=(parent,), name="portico-orphan", daemon=True)
    watch.start()


def _exit_if_orphaned(parent: int) -> None:
    """The backstop of the SIGTERM above: a SIGTERM that arrives while the worker is still starting
    (before its server handles signals) can be lost, and a graceful stop can hang. An orphaned
    worker is given the shutdown grace, then exits."""
    while os.getppid() == parent:
        time.sleep(1.0)
    time.sleep(SHUTDOWN_GRACE_SECONDS + 1.0)
    os._exit(0)


def _return_large_blocks() -> None:
    """Large blocks (a 5 MB Lambda response, its event, a big body) go back to the system when
    freed. glibc would otherwise raise its mmap threshold to the largest block freed so far (up to
    32 MB) and serve later ones from per-thread arenas that keep the memory: measured, a worker
    grew from 40 MB to 300 MB after thirty 20 MB responses, and to 41 MB with a fixed threshold."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    mallopt = getattr(libc, "mallopt", None)  # glibc's; musl has none and returns memory anyway
    if mallopt is not None:
        m_mmap_threshold = -3
        mallopt(m_mmap_threshold, 256 * 1024)


def create_app() -> DataPlane:
    # The server process took it out already; a worker started some other way must not hand the
    # admin secret to the handlers and plugins it loads either.
    os.environ.pop(ENV_ADMIN_KEY, None)
    # The admin key signs requests to AWS_IAM routes; the server process shares it through an
    # inherited descriptor (not the environment), read once here.
    admin_key = admin_principal.take()
    _die_with_parent()
    _return_large_blocks()
    # An empty PORTICO_CONFIG: no config file (admin-created APIs only).
    config_path = os.environ.get(ENV_CONFIG) or Config()
    functions = json.loads(os.environ.get(ENV_FUNCTIONS, "[]"))
    plugins = load_plugins(json.loads(os.environ.get(ENV_PLUGINS, "[]")))
    app = build_dataplane(
        config_path,
        function_specs=functions,
        plugins=plugins,
        shared_buckets_path=os.environ.get(ENV_SHARED_BUCKETS) or None,
        shared_usage_path=os.environ.get(ENV_SHARED_USAGE) or None,
        store=os.environ.get(ENV_DATA_DIR) or None,
        usage_store=os.environ.get(ENV_USAGE_DIR) or None,
        admin_key=admin_key,
        redis=json.loads(os.environ.get(ENV_REDIS) or "null"),
    )
    # SIGHUP (forwarded by the server process) reopens the access-log files, for logrotate, and
    # makes the edge read its TLS files again.
    _core.install_sighup_reopen()
    edge = os.environ.get(ENV_EDGE)
    if edge:
        settings = json.loads(edge)
        # A descriptor of the worker's own: the edge closes it when it stops.
        app.listen(
            os.dup(settings["listener_fd"]), tls=settings.get("tls"), relay_dir=settings.get("relay_dir")
        )
    else:
        app.start_relay(os.environ.get(ENV_RELAY_DIR) or None)
    return app
