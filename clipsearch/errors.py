"""Errors a user can act on: each message says what happened and what to do."""


class ClipsearchError(Exception):
    """Base for every error clipsearch reports to a person rather than as a traceback."""


class ConfigError(ClipsearchError):
    pass


class ServerError(ClipsearchError):
    """The embedded server could not start or stop."""


class ServerUnreachable(ClipsearchError):
    pass


class WrongCredentials(ClipsearchError):
    pass


class TlsRefused(ClipsearchError):
    """The server's TLS certificate did not verify: wrong host name, unknown CA, expired."""


class NoVectorSearch(ClipsearchError):
    pass


class IndexMissing(ClipsearchError):
    pass


class IndexMismatch(ClipsearchError):
    """The index was written by another model or another key-schema version."""


class WeightsUnavailable(ClipsearchError):
    pass


class FolderMismatch(ClipsearchError):
    """Pruning against one folder would delete the photos an index holds from another."""
