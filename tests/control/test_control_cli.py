"""`portico serve --admin-port`: both listeners, the AWS CLI against the admin API."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from control_support import REGION, free_port

REPO = Path(__file__).resolve().parents[2]


def _wait_for(port: int, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"portico exited:\n{log.read_text()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"port {port} never opened:\n{log.read_text()}")


def test_serve_with_admin_port(tmp_path: Path) -> None:
    port, admin_port = free_port(), free_port()
    data_dir = tmp_path / "state"
    log = tmp_path / "serve.log"
    env = {k: v for k, v in os.environ.items() if k != "PORTICO_ADMIN_KEY"}
    command = [sys.executable, "-m", "portico", "serve", "examples/quickstart/portico.yaml"]
    command += ["--port", str(port), "--admin-port", str(admin_port), "--data-dir", str(data_dir)]
    with open(log, "wb") as out:
        process = subprocess.Popen(
            command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    try:
        _wait_for(admin_port, process, log)
        _wait_for(port, process, log)
        assert httpx.get(f"http://127.0.0.1:{port}/hello?name=x").status_code == 200
        key_id, secret = (data_dir / "admin-key").read_text().strip().split(":", 1)
        aws_env = {
            **os.environ,
            "AWS_ACCESS_KEY_ID": key_id,
            "AWS_SECRET_ACCESS_KEY": secret,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        }
        url = f"http://127.0.0.1:{admin_port}"
        result = subprocess.run(
            ["aws", "--endpoint-url", url, "apigatewayv2", "get-apis", "--output", "json"],
            env=aws_env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout) == {"Items": []}
        assert httpx.get(url + "/v2/apis").status_code == 403
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(5)
    output = log.read_text()
    assert f"admin API on http://127.0.0.1:{admin_port}" in output
    assert str(data_dir / "admin-key") in output
    assert secret not in output
    # The admin process went away with the server.
    time.sleep(0.2)
    try:
        socket.create_connection(("127.0.0.1", admin_port), timeout=0.5).close()
        raise AssertionError("the admin port is still open")
    except OSError:
        pass
