"""A checked connection to the Valkey/Redis server: the embedded one, or the one VALKEY_URL names."""

from __future__ import annotations

import valkey

from clipsearch.errors import NoVectorSearch, ServerUnreachable, WrongCredentials
from clipsearch.server import EmbeddedServer
from clipsearch.settings import Settings, redact_url

NO_VECTOR_SEARCH = "this server has no FT.CREATE with VECTOR: use Valkey with valkey-search, Redis 8, or Redis Stack"


def connect(settings: Settings) -> valkey.Valkey:
    """A client that has reached the server, authenticated, and found vector search there."""
    url = EmbeddedServer(settings.data_dir).ensure_started() if settings.valkey_url is None else settings.valkey_url
    shown = settings.server_label
    client = valkey.Valkey.from_url(url, socket_connect_timeout=10, socket_timeout=60, health_check_interval=30)
    try:
        client.ping()
    except valkey.AuthenticationError as error:
        raise WrongCredentials(_credentials_message(shown, error)) from None
    except (valkey.ConnectionError, valkey.TimeoutError, OSError) as error:
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


def _credentials_message(shown: str, error: Exception) -> str:
    return f"{shown} refused the credentials ({error}). Check the user and password in VALKEY_URL."
