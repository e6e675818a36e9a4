"""Connecting: the errors a user meets when the server is unreachable, wrong, or refuses the password."""

from __future__ import annotations

import os
import selectors
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path

import pytest

from clipsearch.errors import NoVectorSearch, ServerUnreachable, TlsRefused, WrongCredentials
from clipsearch.index.connection import connect
from clipsearch.index.server import EmbeddedServer, valkey_binary
from clipsearch.settings import Settings


def start_plain_valkey(folder: Path, port: int, *extra: str) -> subprocess.Popen[bytes]:
    """A real Valkey without the search module, on a loopback port."""
    process = subprocess.Popen(
        [str(valkey_binary()), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder), "--save", "", *extra],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process
        except OSError:
            time.sleep(0.02)
    process.kill()
    raise RuntimeError("plain valkey did not start")


def test_unreachable_server_names_url_without_password(free_port: int) -> None:
    url = f"redis://default:s3cret-pw@127.0.0.1:{free_port}/0"
    with pytest.raises(ServerUnreachable) as refused:
        connect(Settings(valkey_url=url))
    message = str(refused.value)
    assert f"127.0.0.1:{url.rsplit(':', 1)[1].split('/')[0]}" in message
    assert "s3cret-pw" not in message and "default:***@" in message


def test_server_without_vector_search_says_what_to_use(tmp_path: Path, free_port: int) -> None:
    port = free_port
    process = start_plain_valkey(tmp_path, port)
    try:
        with pytest.raises(
            NoVectorSearch, match="no FT.CREATE with VECTOR: use Valkey with valkey-search, Redis 8, or Redis Stack"
        ):
            connect(Settings(valkey_url=f"valkey://127.0.0.1:{port}"))
    finally:
        process.kill()
        process.wait()


def test_wrong_credentials_are_named_and_password_hidden(tmp_path: Path, free_port: int) -> None:
    port = free_port
    process = start_plain_valkey(tmp_path, port, "--requirepass", "right-one")
    try:
        with pytest.raises(WrongCredentials) as refused:
            connect(Settings(valkey_url=f"valkey://default:wrong-one@127.0.0.1:{port}"))
        assert "wrong-one" not in str(refused.value) and "***" in str(refused.value)
        with pytest.raises(WrongCredentials, match="refused the credentials.*VALKEY_URL"):
            connect(Settings(valkey_url=f"valkey://127.0.0.1:{port}"))
        # The right password gets through to the next check.
        with pytest.raises(NoVectorSearch):
            connect(Settings(valkey_url=f"valkey://default:right-one@127.0.0.1:{port}"))
    finally:
        process.kill()
        process.wait()


# --- TLS: a local TLS endpoint in front of the embedded server, with certificates from a test CA ---------


def make_certificates(folder: Path) -> Path:
    """A test CA, and two server certificates it signed: right.pem for 127.0.0.1, wrong.pem for another name."""

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=folder)

    folder.mkdir(parents=True, exist_ok=True)
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", "/CN=clipsearch test CA")  # fmt: skip
    for name, alt_name in (("right", "IP:127.0.0.1"), ("wrong", "DNS:elsewhere.example")):
        (folder / f"{name}.ext").write_text(f"subjectAltName={alt_name}\n")
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                "-subj", f"/CN={name}")  # fmt: skip
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext")  # fmt: skip
    return folder


class TlsProxy:
    """TLS on a loopback port in front of the embedded server's unix socket; keeps every byte clients sent."""

    def __init__(self, certificate: Path, key: Path, backend: Path) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(certificate, key)
        self.backend = backend
        self.received = bytearray()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._pipe, args=(connection,), daemon=True).start()

    def _pipe(self, connection: socket.socket) -> None:
        try:
            client = self.context.wrap_socket(connection, server_side=True)
        except (ssl.SSLError, OSError):
            connection.close()
            return
        server = socket.socket(socket.AF_UNIX)
        server.connect(str(self.backend))
        with client, server, selectors.DefaultSelector() as selector:
            selector.register(client, selectors.EVENT_READ)
            selector.register(server, selectors.EVENT_READ)
            while True:
                for ready, _ in selector.select(timeout=30):
                    try:
                        data = ready.fileobj.recv(65536)  # type: ignore[union-attr]
                    except OSError:
                        return
                    if not data:
                        return
                    if ready.fileobj is client:
                        self.received += data
                        server.sendall(data)
                    else:
                        client.sendall(data)

    def close(self) -> None:
        self.listener.close()


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_certificates(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def tls_proxy(embedded_server: EmbeddedServer, certificates: Path):
    proxies: list[TlsProxy] = []

    def start(name: str) -> TlsProxy:
        proxy = TlsProxy(certificates / f"{name}.pem", certificates / f"{name}.key", embedded_server.socket_path)
        proxies.append(proxy)
        return proxy

    yield start
    for proxy in proxies:
        proxy.close()


def test_a_certificate_for_another_host_is_refused_before_the_password_is_sent(
    tls_proxy, certificates: Path, run_cli
) -> None:
    proxy = tls_proxy("wrong")
    url = f"rediss://default:s3cret-pw@127.0.0.1:{proxy.port}"
    with pytest.raises(TlsRefused) as refused:
        connect(Settings(valkey_url=url, tls_ca_file=certificates / "ca.pem"))
    message = str(refused.value)
    assert "127.0.0.1" in message and "CLIPSEARCH_TLS_CA_FILE" in message and "s3cret-pw" not in message
    assert b"s3cret-pw" not in proxy.received and not proxy.received

    env = {"PATH": os.environ["PATH"], "VALKEY_URL": url, "CLIPSEARCH_TLS_CA_FILE": str(certificates / "ca.pem")}
    cli = run_cli(env, "info")
    assert cli.returncode == 2 and "Traceback" not in cli.stderr and "s3cret-pw" not in cli.stderr + cli.stdout
    assert "TLS certificate" in cli.stderr and "127.0.0.1" in cli.stderr


def test_a_certificate_from_an_unknown_ca_is_refused(tls_proxy) -> None:
    proxy = tls_proxy("right")
    with pytest.raises(TlsRefused, match="certificate verify failed"):
        connect(Settings(valkey_url=f"valkeys://127.0.0.1:{proxy.port}"))


def test_a_private_ca_is_trusted_through_the_setting_or_ssl_cert_file(
    tls_proxy, certificates: Path, monkeypatch
) -> None:
    proxy = tls_proxy("right")
    client = connect(Settings(valkey_url=f"rediss://127.0.0.1:{proxy.port}", tls_ca_file=certificates / "ca.pem"))
    assert client.ping() and b"FT._LIST" in proxy.received
    client.close()
    monkeypatch.setenv("SSL_CERT_FILE", str(certificates / "ca.pem"))
    client = connect(Settings(valkey_url=f"valkeys://127.0.0.1:{proxy.port}"))
    assert client.ping()
    client.close()
