"""A checked connection to the Valkey/Redis server: the embedded one, or the one VALKEY_URL names."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeAlias

import valkey
from valkey.cluster import ValkeyCluster
from valkey.exceptions import ClusterError, ValkeyClusterException

from clipsearch.errors import NoVectorSearch, ServerUnreachable, TlsRefused, WrongCredentials
from clipsearch.index.server import EmbeddedServer, LoadingCallback, report_loading
from clipsearch.settings import TLS_SCHEMES, Settings, redact_url

NO_VECTOR_SEARCH = "this server has no FT.CREATE with VECTOR: use Valkey with valkey-search, Redis 8, or Redis Stack"
# A server, or a cluster of them: a cluster's client sends each key's command to the primary of its slot.
Client: TypeAlias = valkey.Valkey | ValkeyCluster


def connect(settings: Settings, on_loading: LoadingCallback | None = None) -> Client:
    """A client that has reached the server, authenticated, and found vector search there; valkey-py's cluster
    client where the server is a node of a cluster (any node's URL will do: it finds the others).

    A server still reading its data back after a restart is waited for (up to LOADING_TIMEOUT_S), and
    `on_loading` (by default: a logged warning every few seconds) hears how far it got.
    """
    on_loading = on_loading or _log_loading()
    if settings.valkey_url is None:
        server = EmbeddedServer.of(settings)
        url = server.ensure_started(on_loading)
    else:
        url = settings.valkey_url
    shown = settings.server_label
    options: dict[str, Any] = {"socket_connect_timeout": 10, "socket_timeout": 60, **_tls_options(url, settings)}
    client = valkey.Valkey.from_url(url, health_check_interval=30, **options)
    try:
        _ping_when_loaded(client, lambda: valkey.Valkey.from_url(url, **options), on_loading)
    except valkey.AuthenticationError as error:
        raise WrongCredentials(_credentials_message(shown, error)) from None
    except (valkey.ConnectionError, valkey.TimeoutError, OSError) as error:
        if "certificate" in str(error).lower():
            raise TlsRefused(
                f"the TLS certificate of the server at {redact_url(url)} was refused ({error}); nothing was sent "
                "to it. If the server's certificate comes from a CA of your own, set CLIPSEARCH_TLS_CA_FILE to "
                "that CA's certificate file (PEM; SSL_CERT_FILE works too); if the certificate names another "
                "host, put that host name in VALKEY_URL."
            ) from None
        raise ServerUnreachable(
            f"cannot reach the Valkey/Redis server at {redact_url(url)} ({error}). "
            "Is it running, and are VALKEY_URL's host, port and TLS scheme (valkeys:// or rediss://) right?"
        ) from None
    except valkey.ResponseError as error:
        if "NOAUTH" in str(error) or "WRONGPASS" in str(error):
            raise WrongCredentials(_credentials_message(shown, error)) from None
        raise
    if is_cluster_node(client):
        client.close()
        client = ValkeyCluster.from_url(url, **options)
    try:
        client.execute_command("FT._LIST")
    except valkey.ResponseError as error:
        raise NoVectorSearch(f"{shown}: {NO_VECTOR_SEARCH} ({error})") from None
    return client


# A server gone, or part of a cluster: once it is back, the same command or a reload carries on.
LOST = (valkey.ConnectionError, valkey.TimeoutError, ClusterError, ValkeyClusterException)


def is_cluster_node(client: valkey.Valkey) -> bool:
    return str(client.info("cluster").get("cluster_enabled", 0)) == "1"


def is_cluster(client: Client) -> bool:
    return isinstance(client, ValkeyCluster)


LOADING_TIMEOUT_S = 3600


def _ping_when_loaded(client: valkey.Valkey, probe: Callable[[], valkey.Valkey], on_loading: LoadingCallback) -> None:
    """Ping, waiting for a server that is loading its data. Its progress is read by a probe without health
    checks: a client with them pings before every command, and a loading server answers LOADING to a ping."""
    deadline = time.monotonic() + LOADING_TIMEOUT_S
    unexplained = 0  # LOADING answers while INFO says it is not loading: it finished meanwhile, or is odd
    while True:
        try:
            client.ping()
            return
        except valkey.BusyLoadingError:
            with probe() as prober:
                unexplained = 0 if report_loading(prober, on_loading) else unexplained + 1
            if time.monotonic() > deadline or unexplained > 3:
                raise
            time.sleep(1.0 if unexplained == 0 else 0.1)


def _log_loading(every_s: float = 5.0) -> LoadingCallback:
    last = [0.0]

    def log(percent: float, eta: float | None) -> None:
        if time.monotonic() - last[0] >= every_s:
            last[0] = time.monotonic()
            left = f", about {eta:.0f} s left" if eta is not None else ""
            logging.getLogger(__name__).warning("the Valkey server is loading its data: %.0f%%%s", percent, left)

    return log


def _tls_options(url: str, settings: Settings) -> dict[str, Any]:
    """For TLS URLs, verify the certificate chain and that the certificate names the host: valkey-py's
    default checks the chain only, so any valid certificate for another name would receive the password."""
    if url.partition("://")[0].lower() not in TLS_SCHEMES:
        return {}
    options: dict[str, Any] = {"ssl_cert_reqs": "required", "ssl_check_hostname": True}
    if settings.tls_ca_file is not None:
        options["ssl_ca_certs"] = str(settings.tls_ca_file)
    return options


def _credentials_message(shown: str, error: Exception) -> str:
    return f"{shown} refused the credentials ({error}). Check the user and password in VALKEY_URL."
