"""Helpers for the control-plane tests: the admin server in a thread or in a process, boto3 clients.

(Not a conftest.py: a second `conftest` module would shadow tests/conftest.py for the tests that
import from it.)"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import boto3
from botocore.config import Config

from portico.control.server import serve_admin
from portico.control.store import Store

ACCESS_KEY_ID = "AKIATESTTESTTESTTEST"
SECRET = "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"
REGION = "us-east-1"
NO_RETRIES = Config(retries={"max_attempts": 1, "mode": "standard"})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_client(service: str, url: str, key: str = ACCESS_KEY_ID, secret: str = SECRET, **kwargs):
    return boto3.client(
        service,
        endpoint_url=url,
        region_name=kwargs.pop("region_name", REGION),
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        config=kwargs.pop("config", NO_RETRIES),
        **kwargs,
    )


class ThreadAdmin:
    """The admin app on its own event loop in a background thread."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.store = Store(data_dir)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="admin-server", daemon=True)
        self._thread.start()
        if not self._ready.wait(15):
            raise RuntimeError("admin server did not start")

    def _run(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            keys = {ACCESS_KEY_ID: SECRET}
            await serve_admin(self.store, keys, "127.0.0.1", self.port, ready=self._ready, stop=self._stop)

        asyncio.run(main())

    def client(self, service: str, **kwargs):
        return make_client(service, self.url, **kwargs)

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


class ProcessAdmin:
    """`run_admin_server` in a child process (for restart and kill -9 tests)."""

    def __init__(self, data_dir: Path, log_path: Path, admin_key: str | None = None) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        code = (
            "import sys; from portico.control.server import run_admin_server; "
            "run_admin_server('127.0.0.1', int(sys.argv[1]), sys.argv[2], sys.argv[3] or None)"
        )
        key = admin_key if admin_key is not None else f"{ACCESS_KEY_ID}:{SECRET}"
        with open(log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-c", code, str(self.port), str(data_dir), key],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={k: v for k, v in os.environ.items() if k != "PORTICO_ADMIN_KEY"},
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("admin process exited:\n" + log_path.read_text())
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        self.kill()
        raise RuntimeError("admin process did not start")

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def client(self, service: str, **kwargs):
        return make_client(service, self.url, **kwargs)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)
