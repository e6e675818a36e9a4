"""A checked connection to the Valkey/Redis server: the embedded one, or the one VALKEY_URL names."""

from __future__ import annotations

from typing import Any

import valkey

from clipsearch.errors import NoVectorSearch, ServerUnreachable, TlsRefused, WrongCredentials
from clipsearch.server import EmbeddedServer
from clipsearch.settings import TLS_SCHEMES, Settings, redact_url

NO_VECTOR_SEARCH = "this server has no FT.CREATE with VECTOR: use Valkey with valkey-search, Redis 8, or Redis Stack"


def connect(settings: Settings) -> valkey.Valkey:
    """A client that has reached the server, authenticated, and found vector search there."""
    if settings.valkey_url is None:
        url = EmbeddedServer(settings.data_dir, allow_shared=settings.allow_shared_data_dir).ensure_started()
    else:
        url = settings.valkey_url
    shown = settings.server_label
    client = valkey.Valkey.from_url(
        url, socket_connect_timeout=10, socket_timeout=60, health_check_interval=30, **_tls_options(url, settings)
    )
    try:
        client.ping()
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
    try:
        client.execute_command("FT._LIST")
    except valkey.ResponseError as error:
        raise NoVectorSearch(f"{shown}: {NO_VECTOR_SEARCH} ({error})") from None
    return client


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
