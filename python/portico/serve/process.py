"""Assembling the serving processes of `portico serve`: one place for what used to be spread over
the CLI, the workers and environment variables.

The server process binds the public port once, then Granian starts the workers (each a process
that builds its own data plane, `portico.serve.worker`); every worker's core serves the
inherited public socket with its edge, as nginx's workers share theirs. Granian hosts the Python
side (process management, lifespan) and, with `--no-edge`, serves the embedded ASGI app itself.
Throttle buckets live in one shared-memory file so that limits hold for all workers together, and
so do the usage plans' counters (quotas, usage); a usage writer process makes those counts durable
in the data directory (`portico.serve.usage`).

With TLS (`ServeOptions.tls`), each worker's edge serves https (and mTLS with a truststore); the
files are checked here first, so that a bad one stops the server before it binds, with a message
naming the file and the setting.

Shutdown (SIGTERM/SIGINT): each worker's core stops accepting, finishes what is in flight, writes
out its access log, then the worker exits. SIGHUP makes every worker reopen its access-log files
(for logrotate) and read its TLS files again, instead of restarting the workers.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import resource
import secrets
import shutil
import signal
import socket
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from portico.dataplane.app import SHUTDOWN_GRACE_SECONDS
from portico.serve.worker import (
    ENV_CONFIG,
    ENV_DATA_DIR,
    ENV_EDGE,
    ENV_FUNCTIONS,
    ENV_PLUGINS,
    ENV_REDIS,
    ENV_RELAY_DIR,
    ENV_SHARED_BUCKETS,
    ENV_SHARED_USAGE,
    ENV_USAGE_DIR,
)

__all__ = ["RedisOptions", "ServeOptions", "TlsOptions", "check_tls", "listen", "serve"]

log = logging.getLogger("portico.serve")


@dataclass(slots=True, frozen=True)
class TlsOptions:
    """The public port's TLS: files, and the names the user gave them (the YAML settings or the
    command-line flags), for error messages."""

    certificate_file: str
    private_key_file: str
    truststore_file: str | None = None
    names: tuple[str, str, str] = (
        "settings.tls.certificateFile",
        "settings.tls.privateKeyFile",
        "settings.tls.mutualTlsAuthentication.truststoreFile",
    )

    def listen_args(self) -> dict[str, str]:
        """What the edge's `listen` takes."""
        args = {"certificate_file": self.certificate_file, "private_key_file": self.private_key_file}
        if self.truststore_file:
            args["truststore_file"] = self.truststore_file
        return args


def check_tls(tls: TlsOptions) -> list[str]:
    """Read the TLS files as the edge will; returns the truststore's warnings (CA certificates it
    leaves out). Raises SystemExit naming the setting and the file when one cannot be used."""
    from portico import _core

    try:
        return _core.check_tls(tls.certificate_file, tls.private_key_file, tls.truststore_file)
    except ValueError as exc:
        which, message = exc.args if len(exc.args) == 2 else ("certificate", str(exc))
        names = dict(zip(("certificate", "privateKey", "truststore"), tls.names, strict=True))
        name = names.get(which, which)
        raise SystemExit(f"portico: {name}: {message}") from None


@dataclass(slots=True, frozen=True)
class RedisOptions:
    """Cluster mode (`--redis`): the Redis every node shares its limits and admin changes through."""

    url: str
    # "open": each node applies its own limits while Redis is unreachable; "closed": refuse (429).
    fail: str = "open"
    # The longest a request waits on Redis.
    timeout_ms: float = 5.0
    # How long a worker may spend tokens leased from a shared bucket (0: no leases).
    lease_ms: float = 20.0

    def problem(self) -> str | None:
        """What is wrong with these options (None: nothing)."""
        from urllib.parse import urlsplit

        try:
            url = urlsplit(self.url)
            url.port  # noqa: B018 - raises ValueError for a port that is not a number
        except ValueError as exc:
            return f"not a URL: {exc}"
        if url.scheme != "redis" or not url.hostname:
            return "give redis://HOST:PORT/DB"
        if url.path.strip("/") and not url.path.strip("/").isdigit():
            return f"the database must be a number, not {url.path.strip('/')!r}"
        if self.fail not in ("open", "closed"):
            return f"--redis-fail is open or closed, not {self.fail!r}"
        if not 0 < self.timeout_ms <= 60_000:
            return "--redis-timeout-ms must be between 0 and 60000"
        if not 0 <= self.lease_ms <= 10_000:
            return "--redis-lease-ms must be between 0 and 10000"
        return None

    def env(self) -> str:
        return json.dumps(
            {"url": self.url, "fail": self.fail, "timeout_ms": self.timeout_ms, "lease_ms": self.lease_ms}
        )


@dataclass(slots=True)
class ServeOptions:
    config_path: str | None
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    functions: list[str] = field(default_factory=list)
    plugins: list[str] = field(default_factory=list)
    # False: Granian serves the embedded ASGI app on the public port (no edge).
    edge: bool = True
    # https on the public port (served by the edge).
    tls: TlsOptions | None = None
    # Where the usage plans' counts are made durable (None: they are not), and how often.
    usage_dir: str | None = None
    usage_flush_interval_ms: int = 1000
    # Cluster mode: the Redis the nodes share (None: this node alone).
    redis: RedisOptions | None = None


def listen(host: str, port: int, backlog: int = 1024) -> socket.socket:
    """The public listening socket, bound once by the server process before its workers start:
    they inherit it, and each worker's edge accepts from it. A port already in use fails here,
    with OSError, instead of being shared with another server."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def serve(
    options: ServeOptions,
    *,
    start_admin: Callable[[], Any] = lambda: None,
    stop_admin: Callable[[Any], None] = lambda _: None,
    data_dir: str | None = None,
) -> int:
    """Serve until SIGTERM/SIGINT; returns the exit status."""
    from granian import Granian
    from granian.constants import Interfaces, Loops

    if options.tls is not None:
        if not options.edge:
            raise SystemExit("portico: TLS is served by the edge; it cannot be combined with --no-edge")
        for warning in check_tls(options.tls):
            print(f"portico: truststore warning: {warning}", flush=True)
    # The edge's public socket, bound here once (workers inherit it): a port in use fails now.
    public: socket.socket | None = None
    if options.edge:
        try:
            public = listen(options.host, options.port)
        except OSError as exc:
            raise SystemExit(f"portico: cannot listen on {options.host}:{options.port}: {exc}") from None
    shared_dir = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()
    _clean_leftovers(shared_dir)
    tag = f"portico-{os.getpid()}-{secrets.token_hex(4)}"
    buckets = os.path.join(shared_dir, f"{tag}.buckets")
    usage = os.path.join(shared_dir, f"{tag}.usage")
    # Empty: no config file, only the APIs the admin API creates.
    os.environ[ENV_CONFIG] = options.config_path or ""
    os.environ[ENV_FUNCTIONS] = json.dumps(options.functions)
    os.environ[ENV_PLUGINS] = json.dumps(options.plugins)
    os.environ[ENV_SHARED_BUCKETS] = buckets
    os.environ[ENV_SHARED_USAGE] = usage
    if options.redis is not None:
        os.environ[ENV_REDIS] = options.redis.env()
    else:
        os.environ.pop(ENV_REDIS, None)
    scheme = "https" if options.tls is not None else "http"
    mtls = " (mTLS)" if options.tls is not None and options.tls.truststore_file else ""
    where = f"{scheme}://{options.host}:{options.port}{mtls}"
    # Every connection a worker holds (a WebSocket client, a keep-alive one) is a descriptor: the
    # limit bounds them. Granian raises the soft limit to the hard one when it loads.
    open_files = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    print(
        f"portico: serving on {where} with {options.workers} worker(s), up to {open_files:,}"
        " open files each (RLIMIT_NOFILE)",
        flush=True,
    )
    admin = start_admin()
    # The one writer of the usage counts, started before the workers count anything and stopped
    # after they have stopped counting.
    writer = None
    if options.usage_dir is not None:
        from portico.serve.usage import start_usage_writer

        os.environ[ENV_USAGE_DIR] = options.usage_dir
        redis_url = options.redis.url if options.redis is not None else None
        writer = start_usage_writer(options.usage_dir, usage, options.usage_flush_interval_ms, redis_url)
    else:
        os.environ.pop(ENV_USAGE_DIR, None)
    # Cluster mode: the node's store is a replica of every node's admin changes
    # (`portico.control.replica`), kept by a process of its own.
    replicator = None
    if options.redis is not None and data_dir is not None:
        from portico.control.replica import start_replicator

        replicator = start_replicator(data_dir, options.redis.url)
    # With the admin API (or a replica), workers also serve the APIs it creates and follow every
    # change live; without either the store is left alone and only the config file is served.
    if (admin is not None or replicator is not None) and data_dir is not None:
        os.environ[ENV_DATA_DIR] = data_dir
    else:
        os.environ.pop(ENV_DATA_DIR, None)
    # With the edge, Granian hosts the workers and listens only on a Unix socket of its own, in a
    # directory only this user can enter (the embedded app's door, unused by clients).
    socket_dir: str | None = None
    bind: dict[str, Any] = {"address": options.host, "port": options.port}
    if public is not None:
        socket_dir = tempfile.mkdtemp(prefix=f"portico-{os.getpid()}-")
        # The workers' WebSocket relay sockets live there too (`rust/websocket/relay.rs`): only
        # this user's processes can reach a worker's connections through them.
        edge: dict[str, Any] = {"listener_fd": public.fileno(), "relay_dir": socket_dir}
        if options.tls is not None:
            edge["tls"] = options.tls.listen_args()
        os.environ[ENV_EDGE] = json.dumps(edge)
        bind = {"uds": Path(socket_dir) / "granian.sock"}
        os.environ.pop(ENV_RELAY_DIR, None)
    else:
        os.environ.pop(ENV_EDGE, None)
        # Granian's workers hold the WebSocket connections: their relay sockets, as above.
        socket_dir = tempfile.mkdtemp(prefix=f"portico-{os.getpid()}-")
        os.environ[ENV_RELAY_DIR] = socket_dir
    server = Granian(
        "portico.serve.worker:create_app",
        factory=True,
        **bind,
        interface=Interfaces.ASGI,
        workers=options.workers,
        loop=Loops.uvloop,
        # Without the edge, Granian speaks WebSocket and hands the app `websocket` scopes, whose
        # connections the core holds (`portico.dataplane.app.DataPlane.hold`).
        websockets=public is None,
        log_access=False,
        # A worker that dies is replaced at once (Granian logs "Respawning worker-N"); the others
        # keep serving the shared port meanwhile.
        respawn_failed_workers=True,
        # Workers finish their requests in flight (SHUTDOWN_GRACE_SECONDS) before being killed.
        workers_kill_timeout=int(SHUTDOWN_GRACE_SECONDS) + 5,
        # Backpressure counts connections: keep it well above a fronting proxy's keep-alive pool.
        backpressure=1024,
    )
    # SIGHUP reopens the workers' access logs (logrotate); Granian would restart them instead.
    server.signal_handler_reload = _forward_sighup(server)  # type: ignore[method-assign]
    _count_restarts(server)
    try:
        server.serve()
    finally:
        if writer is not None:
            from portico.serve.usage import stop_usage_writer

            stop_usage_writer(writer)
        if replicator is not None:
            from portico.control.replica import stop_replicator

            stop_replicator(replicator)
        for path in (buckets, usage):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        if socket_dir is not None:
            shutil.rmtree(socket_dir, ignore_errors=True)
        if public is not None:
            public.close()
        if admin is not None:
            stop_admin(admin)
    return 0


def _clean_leftovers(shared_dir: str) -> None:
    """Remove what servers killed without a chance to clean up left behind: their bucket files
    and socket directories (`portico-<pid>-...`, owned by us, of a process that no longer runs)."""
    places = [(shared_dir, ".buckets"), (shared_dir, ".usage"), (tempfile.gettempdir(), "")]
    for directory, suffix in places:
        with contextlib.suppress(OSError):
            for name in os.listdir(directory):
                parts = name.split("-")
                if (
                    len(parts) < 3
                    or parts[0] != "portico"
                    or not parts[1].isdigit()
                    or not name.endswith(suffix)
                ):
                    continue
                path = os.path.join(directory, name)
                with contextlib.suppress(OSError):
                    if os.stat(path).st_uid != os.getuid() or _running(int(parts[1])):
                        continue
                    if os.path.isdir(path):
                        shutil.rmtree(path, ignore_errors=True)
                    else:
                        os.unlink(path)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _count_restarts(server: Any) -> None:
    """Log each worker Granian replaces (reloads are forwarded, not respawns, so every respawn
    replaces a worker that died), with how it died and how many replacements so far."""
    respawn = getattr(server, "_respawn_workers", None)
    if respawn is None:  # another Granian: its own "Respawning worker-N" lines remain
        return
    restarts = 0

    def counted(workers: list[int], *args: Any, **kwargs: Any) -> Any:
        nonlocal restarts
        for idx in workers:
            restarts += 1
            with contextlib.suppress(Exception):
                code = server.wrks[idx].inner.exitcode
                how = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
                log.warning("worker-%d died (%s); replaced, restart #%d", idx + 1, how, restarts)
        return respawn(workers, *args, **kwargs)

    server._respawn_workers = counted


def _forward_sighup(server: Any) -> Callable[..., None]:
    def forward(*_: Any) -> None:
        for worker in list(getattr(server, "wrks", ())):
            pid = getattr(getattr(worker, "inner", None), "pid", None)
            if pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGHUP)

    return forward
