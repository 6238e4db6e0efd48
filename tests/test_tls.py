"""TLS and mTLS on the public port, served by the edge: certificates of a CA of the tests' own
(trustme), real `ssl` clients with and without a client certificate against `portico serve`.

AWS ("Configuring mutual TLS authentication for an HTTP API", and the knowledge-center article on
mTLS 403 errors): a client certificate that is missing, not issued by a CA of the truststore,
expired or self-signed gets 403 Forbidden, and the integration is never called; a trusted one
reaches the integration as `requestContext.authentication.clientCert` (payload 2.0) or
`requestContext.identity.clientCert` (REST, payload 1.0)."""

from __future__ import annotations

import datetime as dt
import http.client
import json
import os
import re
import signal
import socket
import ssl
from pathlib import Path

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from admin_e2e import ACCESS_KEY_ID, FILE_CONFIG, SECRET, VERSIONS, AdminServer, rest_echo_api, wait_for
from conftest import free_port, run_portico, start_server
from test_faults import _children

FUNCTIONS = {"counted": "handlers.calls:counted_echo"}
FORMAT = (
    "$context.status|$context.error.responseType|$context.identity.clientCert.subjectDN|"
    "$context.identity.clientCert.serialNumber|$context.identity.clientCert.validity.notAfter|"
    "$context.error.message"
)


def _config(tls: dict, access_log: Path | None = None) -> dict:
    settings: dict = {"tls": tls}
    if access_log is not None:
        settings["accessLog"] = {"format": FORMAT, "destination": str(access_log)}
    return {
        "settings": settings,
        "apis": [
            {
                "name": "tls",
                "routes": [
                    {"route": "ANY /echo", "integration": {"type": "AWS_PROXY", "uri": "counted"}},
                    {
                        "route": "ANY /v1",
                        "integration": {"type": "AWS_PROXY", "uri": "counted", "payloadFormatVersion": "1.0"},
                    },
                    {"route": "GET /mock", "integration": {"type": "MOCK", "statusCode": 200, "body": "ok"}},
                ],
            }
        ],
    }


class Pki:
    """A CA, the server's certificate for 127.0.0.1 and localhost, written where the config says."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.ca = trustme.CA(organization_name="Portico Tests")
        self.ca_file = directory / "ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        self.cert_file = directory / "server.pem"
        self.key_file = directory / "server.key"
        self.truststore = directory / "truststore.pem"
        self.ca.cert_pem.write_to_path(str(self.truststore))
        self.serve(self.ca.issue_cert("127.0.0.1", "localhost"))

    def serve(self, leaf: trustme.LeafCert) -> None:
        """Make `leaf` the served certificate (each file replaced at once, as deployment tools do)."""
        _replace(self.key_file, leaf.private_key_pem.bytes())
        _replace(self.cert_file, b"".join(blob.bytes() for blob in leaf.cert_chain_pems))

    def tls(self, mtls: bool = False) -> dict:
        tls: dict = {"certificateFile": str(self.cert_file), "privateKeyFile": str(self.key_file)}
        if mtls:
            tls["mutualTlsAuthentication"] = {"truststoreFile": str(self.truststore)}
        return tls

    def client(self, leaf: trustme.LeafCert | None = None) -> ssl.SSLContext:
        """An `ssl` client trusting the CA, presenting `leaf` when given."""
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        if leaf is not None:
            leaf.configure_cert(context)
        return context


def _replace(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _get(port: int, path: str, context: ssl.SSLContext, conn: http.client.HTTPSConnection | None = None):
    """(status, headers, body, the server certificate's serial) of one https GET."""
    conn = conn or http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)
    conn.request("GET", path)
    served = x509.load_der_x509_certificate(conn.sock.getpeercert(binary_form=True)).serial_number
    response = conn.getresponse()
    body = response.read()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, body, served


def _leaf(cert: trustme.LeafCert) -> x509.Certificate:
    return x509.load_pem_x509_certificate(cert.cert_chain_pems[0].bytes())


def _serial_text(serial: int) -> str:
    raw = serial.to_bytes(max(1, (serial.bit_length() + 7) // 8), "big")
    return ":".join(f"{b:02x}" for b in raw)


def _openssl_time(when: dt.datetime) -> str:
    return f"{when:%b} {when.day:2d} {when:%H:%M:%S} {when.year} GMT"


def _expected_client_cert(cert: trustme.LeafCert) -> dict:
    leaf = _leaf(cert)
    return {
        "clientCertPem": leaf.public_bytes(serialization.Encoding.PEM).decode(),
        "subjectDN": leaf.subject.rfc4514_string(),
        "issuerDN": leaf.issuer.rfc4514_string(),
        "serialNumber": _serial_text(leaf.serial_number),
        "validity": {
            "notBefore": _openssl_time(leaf.not_valid_before_utc),
            "notAfter": _openssl_time(leaf.not_valid_after_utc),
        },
    }


def _self_signed(common_name: str) -> trustme.LeafCert:
    """A client certificate signed by its own key (no CA)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return trustme.LeafCert(key_pem, cert.public_bytes(serialization.Encoding.PEM), [])


def _calls(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


@pytest.fixture
def calls(tmp_path, monkeypatch) -> Path:
    """The file the counting handler appends to (the server inherits the variable)."""
    path = tmp_path / "calls"
    monkeypatch.setenv("PORTICO_TEST_CALLS", str(path))
    return path


def test_https_serves_and_requests_are_seen_as_https(tmp_path, calls):
    pki = Pki(tmp_path)
    server = start_server(_config(pki.tls()), tmp_path, FUNCTIONS, ssl_context=pki.client())
    try:
        status, _, body, served = _get(server.port, "/echo", pki.client())
        assert status == 200
        event = json.loads(body)
        assert event["headers"]["x-forwarded-proto"] == "https"
        assert "authentication" not in event["requestContext"]  # no mTLS, no client certificate
        assert served == _leaf_serial_of(pki.cert_file)
        # Both TLS versions are served.
        for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
            context = pki.client()
            context.minimum_version = context.maximum_version = version
            conn = http.client.HTTPSConnection("127.0.0.1", server.port, context=context, timeout=10)
            assert _get(server.port, "/mock", context, conn)[0] == 200
            assert conn.sock.version() == {"TLSv1_2": "TLSv1.2", "TLSv1_3": "TLSv1.3"}[version.name]

        # Plain HTTP on the TLS port: the connection closes without a byte; nothing hangs.
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(b"GET /mock HTTP/1.1\r\nHost: localhost\r\n\r\n")
            received = b""
            try:
                while chunk := sock.recv(4096):
                    received += chunk
            except ConnectionResetError:
                pass
        assert received == b""
        # A client that does not trust the certificate refuses it; the server goes on serving.
        with pytest.raises(ssl.SSLCertVerificationError):
            _get(server.port, "/mock", ssl.create_default_context())
        assert _get(server.port, "/mock", pki.client())[0] == 200
    finally:
        server.stop()


def test_mtls_lets_trusted_certificates_in_and_answers_403_to_the_rest(tmp_path, calls):
    pki = Pki(tmp_path)
    access_log = tmp_path / "access.log"
    good = pki.ca.issue_cert("client.example.com", common_name="client one", organization_name="Example Co")
    other_ca = trustme.CA(organization_name="Someone Else")
    rogue = other_ca.issue_cert("client.example.com", common_name="rogue")
    expired = pki.ca.issue_cert(
        "client.example.com",
        common_name="expired",
        not_before=dt.datetime(2020, 1, 1, tzinfo=dt.UTC),
        not_after=dt.datetime(2021, 1, 1, tzinfo=dt.UTC),
    )
    self_signed = _self_signed("myself")
    server = start_server(
        _config(pki.tls(mtls=True), access_log), tmp_path, FUNCTIONS, ssl_context=pki.client()
    )
    try:
        calls_before = _calls(calls)
        # A trusted certificate: served, and the handler sees it as API Gateway renders it.
        status, _, body, _ = _get(server.port, "/echo", pki.client(good))
        assert status == 200, body
        event = json.loads(body)
        client_cert = event["requestContext"]["authentication"]["clientCert"]
        assert client_cert == _expected_client_cert(good)
        assert "CN=client one" in client_cert["subjectDN"] and "O=Example Co" in client_cert["subjectDN"]
        assert ssl.cert_time_to_seconds(client_cert["validity"]["notAfter"]) == int(
            _leaf(good).not_valid_after_utc.timestamp()
        )
        assert event["headers"]["x-forwarded-proto"] == "https"
        # Payload 1.0: requestContext.identity.clientCert.
        status, _, body, _ = _get(server.port, "/v1", pki.client(good))
        assert status == 200
        assert json.loads(body)["requestContext"]["identity"]["clientCert"] == _expected_client_cert(good)
        assert _calls(calls) == calls_before + 2

        # No certificate, another CA's, an expired one, a self-signed one: 403 on every route, and
        # the handler never runs.
        refused_clients = ((None, "none"), (rogue, "rogue"), (expired, "expired"), (self_signed, "self"))
        for client, who in refused_clients:
            for path in ("/echo", "/v1", "/mock", "/nowhere"):
                status, headers, body, _ = _get(server.port, path, pki.client(client))
                assert (status, json.loads(body)) == (403, {"message": "Forbidden"}), (who, path)
                assert headers["content-type"] == "application/json"
                assert headers["connection"] == "close"  # the connection is refused
                assert "x-amzn-errortype" not in headers  # HTTP APIs send none
        assert _calls(calls) == calls_before + 2

        # The access log shows who was let in and who was refused (after the startup probe's line).
        def lines():
            return access_log.read_text().splitlines() if access_log.exists() else []

        wait_for(lambda: len(lines()) >= 19)
        mine = lines()[-18:]
        good_leaf, rogue_leaf, expired_leaf = _leaf(good), _leaf(rogue), _leaf(expired)
        assert mine[0] == (
            f"200|-|{good_leaf.subject.rfc4514_string()}|{_serial_text(good_leaf.serial_number)}|"
            f"{_openssl_time(good_leaf.not_valid_after_utc)}|-"
        )
        # Refused: the certificate shown when there was one, and why (AWS's execution-log words).
        refused = mine[2:]
        assert refused[0] == "403|DEFAULT_4XX|-|-|-|Access denied. Reason: No client certificate"
        assert refused[4] == (
            f"403|DEFAULT_4XX|{rogue_leaf.subject.rfc4514_string()}|{_serial_text(rogue_leaf.serial_number)}|"
            f"{_openssl_time(rogue_leaf.not_valid_after_utc)}|"
            "Access denied. Reason: Could not find issuer for certificate"
        )
        assert refused[8] == (
            f"403|DEFAULT_4XX|{expired_leaf.subject.rfc4514_string()}|"
            f"{_serial_text(expired_leaf.serial_number)}|Jan  1 00:00:00 2021 GMT|"
            "Access denied. Reason: certificate has expired"
        )
        assert refused[12].startswith("403|DEFAULT_4XX|CN=myself|")
        assert refused[12].endswith("|Access denied. Reason: self signed certificate")

        # A new truststore is read without a restart: the other CA's clients get in, ours do not.
        _replace(pki.truststore, other_ca.cert_pem.bytes())
        wait_for(lambda: _get(server.port, "/mock", pki.client(rogue))[0] == 200, timeout=10, interval=0.2)
        assert _get(server.port, "/mock", pki.client(good))[0] == 403
    finally:
        server.stop()


def _raw_get(port: int, context: ssl.SSLContext, session: ssl.SSLSession | None = None):
    """(status, event or None, the TLS session, whether it was resumed) of GET /echo on its own
    connection, offering `session` for resumption."""
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1", session=session) as tls,
    ):
        tls.sendall(b"GET /echo HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := tls.recv(65536):
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        status = int(head.split()[1])
        return status, json.loads(body) if status == 200 else None, tls.session, tls.session_reused


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_resumed_sessions_carry_the_certificate_and_are_checked_again(tmp_path, calls, version):
    pki = Pki(tmp_path)
    good = pki.ca.issue_cert("client.example.com", common_name="resumer")
    rogue = trustme.CA().issue_cert("client.example.com", common_name="rogue")
    server = start_server(_config(pki.tls(mtls=True)), tmp_path, FUNCTIONS, ssl_context=pki.client())
    try:
        context = pki.client(good)
        context.maximum_version = version
        status, _, session, reused = _raw_get(server.port, context)
        assert (status, reused) == (200, False)
        status, event, _, reused = _raw_get(server.port, context, session)
        assert (status, reused) == (200, True)
        assert event["requestContext"]["authentication"]["clientCert"] == _expected_client_cert(good)

        context = pki.client(rogue)
        context.maximum_version = version
        before = _calls(calls)
        status, _, session, _ = _raw_get(server.port, context)
        assert status == 403
        status, _, _, reused = _raw_get(server.port, context, session)
        assert (status, reused) == (403, True)
        assert _calls(calls) == before
    finally:
        server.stop()


def test_the_certificate_is_read_again_without_a_restart(tmp_path, calls):
    pki = Pki(tmp_path)
    first = _leaf_serial_of(pki.cert_file)
    server = start_server(_config(pki.tls()), tmp_path, FUNCTIONS, ssl_context=pki.client())
    try:
        # A connection opened before the rotation...
        kept = http.client.HTTPSConnection("127.0.0.1", server.port, context=pki.client(), timeout=10)
        assert _get(server.port, "/mock", pki.client(), kept)[3] == first

        rotated = pki.ca.issue_cert("127.0.0.1", "localhost")
        pki.serve(rotated)
        second = _leaf(rotated).serial_number
        assert second != first
        # ... new handshakes get the new certificate, without a restart...
        wait_for(lambda: _get(server.port, "/mock", pki.client())[3] == second, timeout=10, interval=0.2)
        # ... and the connection opened before keeps working, on the certificate it had.
        assert _get(server.port, "/mock", pki.client(), kept)[:1] == (200,)
        assert x509.load_der_x509_certificate(kept.sock.getpeercert(binary_form=True)).serial_number == first

        # SIGHUP (forwarded to the workers) reads the files again, changed or not.
        def reads():
            return server.log.count("read " + str(pki.cert_file) + " again")

        before = reads()
        server.process.send_signal(signal.SIGHUP)
        wait_for(lambda: reads() > before, timeout=10, interval=0.1)
        assert _get(server.port, "/mock", pki.client())[:1] == (200,)

        # A broken certificate file: the previous certificate keeps serving, and the log says why.
        def complaints():
            return server.log.count(f"portico: TLS: {pki.cert_file}: ")

        before = complaints()
        _replace(pki.cert_file, b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
        wait_for(lambda: complaints() > before, timeout=10, interval=0.1)
        assert "still serving the previous certificate" in server.log
        status, _, _, served = _get(server.port, "/mock", pki.client())
        assert (status, served) == (200, second)
        assert server.process.poll() is None
    finally:
        server.stop()


def _leaf_serial_of(path: Path) -> int:
    return x509.load_pem_x509_certificate(path.read_bytes()).serial_number


def test_rest_apis_see_the_client_certificate_in_identity(tmp_path, calls):
    """A REST API created with boto3: `requestContext.identity.clientCert`; refused clients get
    REST's 403 with `x-amzn-ErrorType: ForbiddenException`."""
    pki = Pki(tmp_path)
    good = pki.ca.issue_cert("client.example.com", common_name="rest client")
    admin_port = free_port()
    server = start_server(
        FILE_CONFIG,
        tmp_path,
        {**VERSIONS, "echo": FUNCTIONS["counted"]},
        extra_args=[
            "--admin-port",
            str(admin_port),
            "--data-dir",
            str(tmp_path / "state"),
            "--admin-key",
            f"{ACCESS_KEY_ID}:{SECRET}",
            "--tls-cert",
            str(pki.cert_file),
            "--tls-key",
            str(pki.key_file),
            "--tls-truststore",
            str(pki.truststore),
        ],
        ssl_context=pki.client(),
    )
    try:
        admin = AdminServer(server, f"http://127.0.0.1:{admin_port}", tmp_path / "state")
        apigw = admin.client("apigateway")
        api_id = rest_echo_api(apigw, "mtls")
        apigw.create_deployment(restApiId=api_id, stageName="prod")
        path = f"/restapis/{api_id}/prod/_user_request_/anything"
        response, _ = wait_for(
            lambda: (r := _get(server.port, path, pki.client(good)))[0] == 200 and r, timeout=5, interval=0.1
        )
        event = json.loads(response[2])
        assert event["requestContext"]["identity"]["clientCert"] == _expected_client_cert(good)
        assert event["headers"]["X-Forwarded-Proto"] == "https"
        before = _calls(calls)
        status, headers, body, _ = _get(server.port, path, pki.client())
        assert (status, json.loads(body)) == (403, {"message": "Forbidden"})
        assert headers["x-amzn-errortype"] == "ForbiddenException"
        assert _calls(calls) == before
    finally:
        server.stop()


def test_a_killed_worker_is_replaced_and_serves_tls(tmp_path, calls):
    pki = Pki(tmp_path)
    good = pki.ca.issue_cert("client.example.com", common_name="client")
    server = start_server(
        _config(pki.tls(mtls=True)), tmp_path, FUNCTIONS, workers=2, ssl_context=pki.client()
    )
    try:
        workers = _children(server.process.pid)
        assert len(workers) == 2, workers
        os.kill(workers[0], signal.SIGKILL)
        wait_for(
            lambda: len(now := set(_children(server.process.pid))) == 2 and workers[0] not in now,
            timeout=10,
            interval=0.1,
        )
        # Every connection is served over TLS, whichever worker accepts it, the new one included.
        for _ in range(40):
            status, _, body, _ = _get(server.port, "/echo", pki.client(good))
            assert status == 200
            assert json.loads(body)["requestContext"]["authentication"]["clientCert"]["subjectDN"] == (
                _leaf(good).subject.rfc4514_string()
            )
            assert _get(server.port, "/mock", pki.client())[0] == 403
    finally:
        server.stop()


# ------------------------------------------------------------------------------------ startup


def _serve_refused(args: list[str], cwd: Path) -> str:
    """Run `portico serve` expecting it to refuse to start; its output."""
    functions = [f"--function={name}={target}" for name, target in FUNCTIONS.items()]
    result = run_portico("serve", *args, *functions, "--port", str(free_port()), cwd=cwd, timeout=30)
    assert result.returncode != 0, result.stdout + result.stderr
    assert "serving on" not in result.stdout
    return result.stdout + result.stderr


def test_unusable_files_stop_the_server_with_a_message_naming_them(tmp_path):
    pki = Pki(tmp_path)
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("this is not a certificate\n")
    broken = tmp_path / "broken.pem"
    broken.write_text("-----BEGIN CERTIFICATE-----\n@@@@\n-----END CERTIFICATE-----\n")
    other_key = tmp_path / "other.key"
    other_key.write_bytes(pki.ca.issue_cert("localhost").private_key_pem.bytes())
    config = tmp_path / "portico.yaml"

    def refused(tls: dict) -> str:
        config.write_text(json.dumps(_config(tls)))
        return _serve_refused([str(config)], tmp_path)

    out = refused({**pki.tls(), "certificateFile": str(garbage)})
    assert f"portico: settings.tls.certificateFile: {garbage}: no certificate in it" in out
    out = refused({**pki.tls(), "certificateFile": str(broken)})
    assert f"portico: settings.tls.certificateFile: {broken}: malformed PEM" in out
    out = refused({**pki.tls(), "privateKeyFile": str(pki.cert_file)})
    assert f"portico: settings.tls.privateKeyFile: {pki.cert_file}: no private key in it" in out
    out = refused({**pki.tls(), "privateKeyFile": str(other_key)})
    assert (
        f"portico: settings.tls.privateKeyFile: {other_key}: this key does not match the certificate of "
        f"{pki.cert_file}"
    ) in out
    out = refused({**pki.tls(), "certificateFile": str(tmp_path / "missing.pem")})
    assert f"settings.tls.certificateFile: {tmp_path / 'missing.pem'}: cannot read it" in out
    out = refused(pki.tls() | {"mutualTlsAuthentication": {"truststoreFile": str(garbage)}})
    assert f"portico: settings.tls.mutualTlsAuthentication.truststoreFile: {garbage}: no certificate" in out
    # Relative paths are the config file's.
    config.write_text(json.dumps(_config({"certificateFile": "garbage.pem", "privateKeyFile": "server.key"})))
    out = _serve_refused([str(config)], Path("/"))
    assert f"portico: settings.tls.certificateFile: {garbage}: no certificate in it" in out

    # The flags name themselves.
    plain = tmp_path / "plain.yaml"
    plain.write_text(json.dumps({"apis": _config({})["apis"]}))
    out = _serve_refused(
        [str(plain), "--tls-cert", str(pki.cert_file), "--tls-key", str(other_key)], tmp_path
    )
    assert f"portico: --tls-key: {other_key}: this key does not match" in out
    out = _serve_refused([str(plain), "--tls-cert", str(pki.cert_file)], tmp_path)
    assert "--tls-cert and --tls-key go together" in out
    flags = ["--tls-cert", str(pki.cert_file), "--tls-key", str(pki.key_file)]
    out = _serve_refused([str(plain), "--no-edge", *flags], tmp_path)
    assert "cannot be combined with --no-edge" in out


def test_truststore_certificates_that_cannot_be_used_are_left_out_with_a_warning(tmp_path):
    from portico import _core

    pki = Pki(tmp_path)
    mixed = tmp_path / "mixed.pem"
    leaf = pki.ca.issue_cert("localhost")
    # A certificate cut short (not X.509 any more), then the CA.
    bad = _leaf(leaf).public_bytes(serialization.Encoding.DER)[:-10]
    bad_pem = ssl.DER_cert_to_PEM_cert(bad).encode()
    mixed.write_bytes(bad_pem + pki.ca.cert_pem.bytes())
    warnings = _core.check_tls(str(pki.cert_file), str(pki.key_file), str(mixed))
    assert len(warnings) == 1 and re.search(r"certificate #1 .*left out", warnings[0]), warnings
    with pytest.raises(ValueError) as refused:
        _core.check_tls(str(pki.cert_file), str(pki.key_file), str(tmp_path / "none.pem"))
    assert refused.value.args[0] == "truststore"
    assert _core.check_tls(str(pki.cert_file), str(pki.key_file)) == []
