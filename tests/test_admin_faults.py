"""Faults around the admin API and its store: a failing disk never takes the data plane down (it
keeps serving its last deployment while the admin API answers AWS's 500), hostile requests get
AWS's 4xx answers, and the store's files and the admin key stay private."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sqlite3
import stat
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import boto3
import botocore.auth
import botocore.awsrequest
import botocore.credentials
import httpx
import pytest
from botocore.exceptions import ClientError

from admin_e2e import ACCESS_KEY_ID, REGION, SECRET, rest_echo_api, start_admin_server, wait_for
from conftest import free_port, start_server
from portico.config.models import Config
from portico.control.keys import ENV_ADMIN_KEY, load_or_create_admin_key
from portico.control.store import Store
from portico.dataplane.app import SourceUnavailable
from portico.dataplane.build import build_dataplane
from test_faults import _alive

# ------------------------------------------------------------------------------------------------
# Helpers


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs, to fill up (needs root, as CI and the developers' machines have)."""
    mount_point = tmp_path / "fs"
    mount_point.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        # Lazy: whatever still holds a file there lets go when it exits.
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def _fill(directory: Path) -> Path:
    """Write a file until the file system is full (ENOSPC); returns it."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (1 << 16, 4096, 1):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * size)
    finally:
        os.close(fd)
    return filler


def _descendants(pid: int) -> set[int]:
    """Every process below `pid` (workers, the admin process, their helpers)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _mapped_files(pids: set[int], directory: Path) -> set[str]:
    """Files under `directory` that any of `pids` has memory-mapped."""
    prefix = str(directory.resolve()) + "/"
    found = set()
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
                path = line.split(maxsplit=5)[5] if len(line.split(maxsplit=5)) == 6 else ""
                if path.startswith(prefix):
                    found.add(path.removesuffix(" (deleted)"))
    return found


def _status_of(call) -> tuple[int, str | None, str | None]:
    """(HTTP status, x-amzn-ErrorType, error message) of a boto3 call."""
    try:
        response = call()
    except ClientError as error:
        meta = error.response["ResponseMetadata"]
        return (
            meta["HTTPStatusCode"],
            meta["HTTPHeaders"].get("x-amzn-errortype"),
            error.response["Error"].get("Message"),
        )
    return response["ResponseMetadata"]["HTTPStatusCode"], None, None


def _served_everywhere(url: str) -> bool:
    """20 answers 200 in a row, each on a new connection (so from every worker)."""
    return all(httpx.get(url, headers={"connection": "close"}).status_code == 200 for _ in range(20))


# ------------------------------------------------------------------------------------------------
# 1. A failing store never takes the data plane down


def test_a_full_disk_under_the_store_leaves_every_process_serving(small_tmpfs, portico):
    """The data directory's file system fills up (and whatever of the store a process has
    memory-mapped is truncated, as a file system that cannot back it does) while the admin API
    writes: no process dies; the data plane serves its last deployment throughout; the admin API
    answers AWS's 500 InternalFailure to writes until space is back, then works, and its changes
    are served again."""
    admin = start_admin_server(portico, small_tmpfs, workers=2)
    apigw = admin.client("apigateway")
    api_id = rest_echo_api(apigw, "faults")
    apigw.create_deployment(restApiId=api_id, stageName="prod")
    url = f"{admin.url}/restapis/{api_id}/prod/_user_request_/health"
    wait_for(lambda: _served_everywhere(url), timeout=5)

    processes = _descendants(admin.server.process.pid)
    assert len(processes) >= 3, processes  # two workers and the admin process at least
    data_dir = admin.data_dir
    mapped = _mapped_files(processes | {admin.server.process.pid}, data_dir)

    filler = _fill(small_tmpfs)
    for path in mapped:  # what SQLite's WAL index (`-shm`) suffers when its pages cannot be backed
        os.truncate(path, 0)
    served: Counter[int | str] = Counter()
    writes: list[tuple[int, str | None, str | None]] = []
    reads: list[int] = []
    started = time.monotonic()
    with httpx.Client(timeout=5) as client:
        while time.monotonic() - started < 6:
            try:
                served[client.get(url, headers={"connection": "close"}).status_code] += 1
            except httpx.HTTPError as exc:
                served[type(exc).__name__] += 1
            if sum(served.values()) % 10 == 0:
                writes.append(_status_of(lambda: apigw.create_rest_api(name="during")))
                reads.append(_status_of(lambda: apigw.get_rest_apis())[0])
            time.sleep(0.01)

    assert set(served) == {200}, served
    assert len(writes) >= 3 and set(writes) == {(500, "InternalFailure", "An internal error occurred")}, (
        writes
    )
    assert set(reads) == {200}, reads
    assert all(_alive(pid) for pid in processes), "a process died"
    assert "Respawning" not in admin.server.log
    assert "Fatal Python error" not in admin.server.log
    # The design that makes it so: no process maps any file of the store.
    assert mapped == set(), mapped

    filler.unlink()
    wait_for(lambda: _status_of(lambda: apigw.create_rest_api(name="after"))[0] == 201, timeout=5)
    apigw.create_deployment(restApiId=api_id, stageName="next")
    wait_for(lambda: _served_everywhere(url.replace("/prod/", "/next/")), timeout=5)
    assert "Traceback" not in admin.server.log


def test_a_full_disk_fails_the_write_with_sqlites_own_error(small_tmpfs):
    """The transaction whose COMMIT hits the full disk raises SQLite's error (not a failed
    rollback of a transaction SQLite had already rolled back), and the store works once space is
    back."""
    store = Store(small_tmpfs / "state")
    with store.transaction() as tx:
        tx.put("apigateway", "restapi", "kept", {"id": "kept"})
    filler = _fill(small_tmpfs)
    with pytest.raises(sqlite3.OperationalError, match="database or disk is full"), store.transaction() as tx:
        tx.put("apigateway", "restapi", "big", {"id": "big", "blob": "x" * 200_000})
    with store.read() as tx:
        assert tx.exists("apigateway", "restapi", "kept")
        assert not tx.exists("apigateway", "restapi", "big")
    filler.unlink()
    with store.transaction() as tx:
        tx.put("apigateway", "restapi", "big", {"id": "big"})
    assert store.generation() == 2
    assert store.integrity_check() == "ok"


def _put_mock_api(store: Store, api_id: str, body: str) -> None:
    """A REST API with one deployed stage `prod`: `GET /{proxy+}` -> MOCK answering `body`."""
    method = {
        "httpMethod": "GET",
        "authorizationType": "NONE",
        "methodResponses": {"200": {"statusCode": "200"}},
        "methodIntegration": {
            "type": "MOCK",
            "requestTemplates": {"application/json": '{"statusCode": 200}'},
            "integrationResponses": {
                "200": {"statusCode": "200", "responseTemplates": {"application/json": body}}
            },
        },
    }
    deployment = f"d{store.generation() + 1}"
    with store.transaction() as tx:
        tx.put("apigateway", "restapi", api_id, {"id": api_id, "name": api_id})
        snapshot = {"resources": [{"id": "r1", "path": "/{proxy+}", "resourceMethods": {"GET": method}}]}
        tx.put(
            "apigateway", "deployment", deployment, {"id": deployment, "_snapshot": snapshot}, parent=api_id
        )
        tx.put(
            "apigateway",
            "stage",
            f"{api_id}/prod",
            {"stageName": "prod", "deploymentId": deployment},
            parent=api_id,
        )


async def _body(app, path: str = "/prod/x") -> str:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://x") as client:
        response = await client.get(path)
        return f"{response.status_code} {response.text}"


def test_a_store_that_cannot_be_read_leaves_the_data_plane_serving(tmp_path, caplog):
    """A worker opens the store read-only (it writes nothing in the data directory); when the
    store cannot be read, it keeps serving what it built, says so once, and follows the store
    again as soon as it can be read."""
    store = Store(tmp_path)
    _put_mock_api(store, "readable", "one")
    app = build_dataplane(Config(), store=str(tmp_path))
    database = tmp_path / "portico.db"
    kept = database.read_bytes()

    async def scenario() -> None:
        assert await _body(app) == "200 one"
        app.start_watching()
        try:
            with caplog.at_level(logging.INFO, logger="portico.dataplane"):
                database.write_bytes(b"")  # what a failing file system may leave
                await asyncio.sleep(1.0)  # five polls
                assert await _body(app) == "200 one"
                database.write_bytes(kept)
                _put_mock_api(store, "readable", "two")
                for _ in range(100):
                    if await _body(app) == "200 two":
                        break
                    await asyncio.sleep(0.05)
                assert await _body(app) == "200 two"
        finally:
            await app.stop_watching()

    asyncio.run(scenario())
    assert caplog.text.count("checking for a new configuration failed") == 1, caplog.text
    assert "the configuration source can be read again" in caplog.text
    assert app.source.store.read_only  # type: ignore[union-attr]


def test_a_build_the_store_fails_is_tried_again(tmp_path):
    """A build that fails because the store could not be read is not this generation's fault:
    the next poll builds it again (a configuration that does not build is not retried)."""
    store = Store(tmp_path)
    _put_mock_api(store, "flaky", "one")
    app = build_dataplane(Config(), store=str(tmp_path))
    source = app.source
    assert source is not None
    reader = source.store.read  # type: ignore[attr-defined]

    def unreadable() -> None:
        raise sqlite3.OperationalError("disk I/O error")

    async def scenario() -> None:
        _put_mock_api(store, "flaky", "two")
        source.store.read = unreadable  # type: ignore[attr-defined]
        generation = app.generation
        with pytest.raises(SourceUnavailable, match="disk I/O error"):
            await app.refresh()
        assert app.generation == generation
        assert await _body(app) == "200 one"
        source.store.read = reader  # type: ignore[attr-defined]
        assert await app.refresh()
        assert await _body(app) == "200 two"

    asyncio.run(scenario())


# ------------------------------------------------------------------------------------------------
# 4. Every file of the data directory is private, whatever the directory's mode


def _modes(directory: Path) -> dict[str, int]:
    return {path.name: stat.S_IMODE(path.stat().st_mode) for path in directory.iterdir()}


def test_store_and_key_files_are_0600_in_an_open_data_directory(tmp_path, monkeypatch):
    data_dir = tmp_path / "open"
    data_dir.mkdir(mode=0o755)
    data_dir.chmod(0o755)
    monkeypatch.delenv(ENV_ADMIN_KEY, raising=False)
    previous = os.umask(0o022)
    try:
        store = Store(data_dir)
        with store.transaction() as tx:  # the rollback journal comes with the first write
            tx.put("apigateway", "restapi", "a", {"id": "a"})
        load_or_create_admin_key(data_dir)
    finally:
        os.umask(previous)
    modes = _modes(data_dir)
    assert {"portico.db", "portico.db-journal", "admin-key"} <= set(modes), modes
    assert set(modes.values()) == {0o600}, {name: oct(mode) for name, mode in modes.items()}
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o755  # the directory is the owner's choice


def test_files_an_older_version_left_readable_are_made_private(tmp_path, monkeypatch):
    data_dir = tmp_path / "old"
    data_dir.mkdir()
    monkeypatch.delenv(ENV_ADMIN_KEY, raising=False)
    Store(data_dir).close()
    key_id, secret, _ = load_or_create_admin_key(data_dir)
    for path in data_dir.iterdir():
        path.chmod(0o644)
    Store(data_dir)
    assert load_or_create_admin_key(data_dir)[:2] == (key_id, secret)
    assert set(_modes(data_dir).values()) == {0o600}, _modes(data_dir)


# ------------------------------------------------------------------------------------------------
# 2, 3. Hostile requests get AWS's JSON 4xx answers, and one log line each


def _signed(admin, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None):
    """A hand-built request to the admin API, signed like boto3 signs."""
    request = botocore.awsrequest.AWSRequest(
        method=method, url=admin.admin_url + path, data=body, headers=dict(headers or {})
    )
    credentials = botocore.credentials.Credentials(ACCESS_KEY_ID, SECRET)
    botocore.auth.SigV4Auth(credentials, "apigateway", REGION).add_auth(request)
    prepared = request.prepare()
    return httpx.request(method, prepared.url, headers=dict(prepared.headers), content=body, timeout=30)


def _log_lines(admin, request_id: str) -> list[str]:
    return [line for line in admin.server.log.splitlines() if request_id in line]


def test_a_deeply_nested_body_is_a_bad_request(portico, tmp_path):
    admin = start_admin_server(portico, tmp_path)
    json_headers = {"Content-Type": "application/json"}
    nested = b"[" * 100_000
    for method, path, body in [
        ("POST", "/v2/apis", nested),  # the request body itself
        ("POST", "/v2/apis", b'{"Name": ' + b'{"a": ' * 100_000),
        # A document a handler parses: the OpenAPI definition of an import.
        ("POST", "/restapis?mode=import", nested),
        ("PUT", "/v2/apis", b'{"body": "' + b"[" * 100_000 + b'"}'),
    ]:
        response = _signed(admin, method, path, body, json_headers)
        assert response.status_code == 400, (path, response.text)
        assert response.headers["x-amzn-ErrorType"] == "BadRequestException"
        assert response.headers["content-type"] == "application/json"
        assert response.json() == {
            "message": "Could not parse request body into json: the document is nested too deeply"
        }
        request_id = response.headers["x-amzn-RequestId"]
        wait_for(lambda request_id=request_id: _log_lines(admin, request_id), timeout=5)
        assert len(_log_lines(admin, request_id)) <= 2, _log_lines(admin, request_id)
    # The request body itself: nothing but the access-log line.
    assert "Traceback" not in admin.server.log and "RecursionError" not in admin.server.log
    # And the admin API goes on.
    assert admin.client("apigatewayv2").get_apis()["Items"] == []


def test_a_long_url_gets_aws_json_answers(portico, tmp_path):
    """Past aiohttp's 8,190-byte request line: a URL within AWS's 10,240-byte head is routed as
    usual, a longer one is 414 (a head too large otherwise 431), all as JSON with the error
    type, the way the service's other errors are answered."""
    admin = start_admin_server(portico, tmp_path)
    within = _signed(admin, "GET", "/restapis/" + "a" * 9000)
    assert within.status_code == 404, within.text
    assert within.headers["x-amzn-ErrorType"] == "NotFoundException"
    assert within.json()["message"].startswith("Invalid REST API identifier specified")

    for length in (11_000, 60_000):
        for signed in (True, False):  # the limit is checked before authentication
            path = "/restapis/" + "a" * length
            response = _signed(admin, "GET", path) if signed else httpx.get(admin.admin_url + path)
            assert response.status_code == 414, response.text
            assert response.headers["x-amzn-ErrorType"] == "BadRequestException"
            assert response.headers["content-type"] == "application/json"
            assert response.json() == {"message": "Request-URI Too Long"}
            assert response.headers["x-amzn-RequestId"]
    query = _signed(admin, "GET", "/restapis?position=" + "p" * 12_000)
    assert (query.status_code, query.json()) == (414, {"message": "Request-URI Too Long"})

    headers = _signed(admin, "GET", "/restapis", headers={"x-padding": "h" * 12_000})
    assert headers.status_code == 431, headers.text
    assert headers.headers["x-amzn-ErrorType"] == "BadRequestException"
    assert headers.json() == {"message": "Request Header Fields Too Large"}

    assert admin.client("apigateway").get_rest_apis()["items"] == []
    assert "Traceback" not in admin.server.log
    assert max(len(line) for line in admin.server.log.splitlines()) < 2000


# ------------------------------------------------------------------------------------------------
# 5. The admin key never reaches user code


def test_the_admin_key_never_reaches_handlers(tmp_path, monkeypatch):
    """Started with PORTICO_ADMIN_KEY, the server takes the key out of the environment before
    any handler loads, in the server process and in every worker; the admin API still accepts it.
    (And the data directory's files are private though the directory is not.)"""
    key = f"{ACCESS_KEY_ID}:{SECRET}"
    probe_file = tmp_path / "probe.txt"
    monkeypatch.setenv(ENV_ADMIN_KEY, key)
    monkeypatch.setenv("PORTICO_PROBE_FILE", str(probe_file))
    data_dir = tmp_path / "state"
    data_dir.mkdir(mode=0o755)
    data_dir.chmod(0o755)
    admin_port = free_port()
    config = {
        "apis": [
            {
                "name": "probe",
                "routes": [{"route": "GET /seen", "integration": {"type": "AWS_PROXY", "uri": "probe"}}],
            }
        ]
    }
    server = start_server(
        config,
        tmp_path,
        {"probe": "handlers.secrets_probe:admin_key_seen"},
        workers=2,
        extra_args=["--admin-port", str(admin_port), "--data-dir", str(data_dir)],
    )
    try:
        # Which worker accepts a connection is the kernel's choice; on a loaded machine one worker
        # may take many in a row, so ask until both have answered (or clearly never will).
        seen = []
        while len({answer["pid"] for answer in seen}) < 2 and len(seen) < 400:
            seen.append(httpx.get(server.url + "/seen", headers={"connection": "close"}).json())
        assert len({answer["pid"] for answer in seen}) == 2, "both workers answered"
        for answer in seen:
            assert (answer["at_import"], answer["at_call"]) == (None, None), answer
            assert SECRET not in json.dumps(answer["argv"])
        # Loaded once in the server process (the workers inherit it) or again in each worker.
        imports = probe_file.read_text().split()
        assert imports and set(imports[1::2]) == {"None"}, imports

        client = boto3.client(
            "apigateway",
            endpoint_url=f"http://127.0.0.1:{admin_port}",
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY_ID,
            aws_secret_access_key=SECRET,
        )
        assert client.create_rest_api(name="signed-with-the-env-key")["name"] == "signed-with-the-env-key"
        assert not (data_dir / "admin-key").exists()  # the configured key was used, none generated
        modes = _modes(data_dir)
        assert modes and set(modes.values()) == {0o600}, {name: oct(mode) for name, mode in modes.items()}
    finally:
        server.stop()
    assert SECRET not in server.log
