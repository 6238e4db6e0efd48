"""Shared fixtures: a real Portico server in a subprocess, on a free loopback port."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
import yaml

TESTS_DIR = Path(__file__).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """A running `portico serve` process."""

    def __init__(self, process: subprocess.Popen, port: int, log_path: Path, scheme: str = "http") -> None:
        self.process = process
        self.port = port
        self.url = f"{scheme}://127.0.0.1:{port}"
        self.log_path = log_path

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            # Granian stops its workers on SIGINT; SIGKILL the group if it lingers.
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=8)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=5)


def start_server(
    config: dict | str | Path,
    workdir: Path,
    functions: dict[str, str] | None = None,
    workers: int = 1,
    extra_args: list[str] | None = None,
    wait_path: str = "/__portico_probe__",
    port: int | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> Server:
    """Start `python -m portico serve` on a free port (or `port`) and wait until it answers HTTP
    (https, trusting `ssl_context`, when given one: a server with TLS)."""
    if isinstance(config, dict):
        config_path = workdir / "portico.yaml"
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    else:
        config_path = Path(config)
    port = port or free_port()
    args = [sys.executable, "-m", "portico", "serve", str(config_path), "--port", str(port)]
    args += ["--workers", str(workers)]
    for name, target in (functions or {}).items():
        args += ["--function", f"{name}={target}"]
    args += extra_args or []
    env = dict(os.environ)
    # Handlers live in tests/handlers; the server finds modules from its working directory.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS_DIR), env.get("PYTHONPATH")]))
    log_path = workdir / f"portico-{port}.log"
    log = open(log_path, "wb")  # noqa: SIM115 - the server process owns it
    process = subprocess.Popen(
        args, cwd=TESTS_DIR, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
    )
    server = Server(process, port, log_path, "https" if ssl_context else "http")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"portico exited with {process.returncode}:\n{server.log}")
        try:
            httpx.get(server.url + wait_path, timeout=1, verify=ssl_context or True)
            return server
        except httpx.HTTPError:
            time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"portico did not answer within 30 s:\n{server.log}")


@pytest.fixture
def portico(tmp_path: Path) -> Iterator:
    """Factory fixture: `portico(config, functions=None, workers=1, extra_args=None) -> Server`."""
    servers: list[Server] = []

    def start(
        config: dict | str | Path,
        functions: dict[str, str] | None = None,
        workers: int = 1,
        extra_args: list[str] | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> Server:
        server = start_server(config, tmp_path, functions, workers, extra_args, ssl_context=ssl_context)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def run_portico(*args: str, cwd: Path | None = None, timeout: float = 30) -> subprocess.CompletedProcess:
    """Run a `portico` CLI command to completion."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS_DIR), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "portico", *args],
        cwd=cwd or TESTS_DIR,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


class RedisServer:
    """A `redis-server` of the test's own on a free loopback port, without persistence: it can
    be killed and started again on the same port (empty, as a restarted cache would be)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed (tests/run.sh installs it)")
        args = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        args += ["--dir", str(self.workdir)]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.ping():
                return
            time.sleep(0.02)
        raise RuntimeError("redis-server did not answer within 10 s")

    def ping(self) -> bool:
        try:
            return bool(self.client().ping())
        except redis.RedisError:
            return False

    def client(self) -> redis.Redis:
        """A redis-py client of this server (strings decoded)."""
        return redis.Redis(host="127.0.0.1", port=self.port, decode_responses=True, socket_timeout=2)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=5)

    def freeze(self) -> None:
        """SIGSTOP: connections stay open and nothing answers (a hung Redis)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A running redis-server on a free loopback port (killed at the end of the test)."""
    server = RedisServer(tmp_path)
    server.start()
    yield server
    if server.process is not None and server.process.poll() is None:
        server.thaw()
    server.kill()
