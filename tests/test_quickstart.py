"""The README's first command: `portico serve examples/quickstart/portico.yaml` serves the four URLs
the README then shows, with the embedded defaults (no admin port, no Redis)."""

from __future__ import annotations

from pathlib import Path

import httpx

from conftest import free_port, start_server

ROOT = Path(__file__).resolve().parent.parent


def test_the_quickstart_serves_what_the_readme_shows(tmp_path, monkeypatch):
    port = free_port()
    # The example proxies to its own /hello on port 8080; here it listens on a free port.
    config = (
        (ROOT / "examples/quickstart/portico.yaml").read_text().replace("127.0.0.1:8080", f"127.0.0.1:{port}")
    )
    (tmp_path / "portico.yaml").write_text(config)
    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # functions are found from the repository root
    server = start_server(tmp_path / "portico.yaml", tmp_path, port=port)
    try:
        hello = httpx.get(f"{server.url}/hello", params={"name": "you"})
        assert hello.status_code == 200, hello.text
        assert "you" in hello.text
        pet = httpx.get(f"{server.url}/pets/1")
        assert pet.status_code == 200, pet.text
        status = httpx.get(f"{server.url}/status")
        assert (status.status_code, status.json()) == (200, {"status": "ok"})
        proxied = httpx.get(f"{server.url}/proxy/hello", params={"name": "you"})
        assert proxied.status_code == 200, proxied.text
        assert proxied.json()["message"] == hello.json()["message"] == "hello, you"
    finally:
        server.stop()
