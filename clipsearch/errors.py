"""Errors a user can act on: each message says what happened and what to do, each class the title a page
shows above it."""


class ClipsearchError(Exception):
    """Base for every error clipsearch reports to a person rather than as a traceback."""

    title = "Something went wrong"


class ConfigError(ClipsearchError):
    title = "A setting is wrong"


class ServerError(ClipsearchError):
    """The embedded server could not start or stop."""

    title = "The embedded Valkey server could not start"


class ServerUnreachable(ClipsearchError):
    title = "Cannot reach the Valkey server"


class WrongCredentials(ClipsearchError):
    title = "Valkey refused the credentials"


class TlsRefused(ClipsearchError):
    """The server's TLS certificate did not verify: wrong host name, unknown CA, expired."""

    title = "The Valkey server's TLS certificate was refused"


class NoVectorSearch(ClipsearchError):
    title = "This server has no vector search"


class IndexMissing(ClipsearchError):
    title = "No photos indexed"


class IndexMismatch(ClipsearchError):
    """The index was written by another model or another key-schema version."""

    title = "The index does not fit this model"


class SearchRefused(ClipsearchError):
    """The server answered a search with an error that is not a missing index."""

    title = "The Valkey server refused the search"


class WeightsUnavailable(ClipsearchError):
    title = "The CLIP model weights are not available"


class ExportFailed(ClipsearchError):
    """Preparing a model for ONNX Runtime did not finish (killed for lack of memory, or timed out): running
    it with torch instead would take more of the same memory, so it is reported, not worked around."""

    title = "The model could not be prepared for ONNX Runtime"


class FolderMismatch(ClipsearchError):
    """Pruning against one folder would delete the photos an index holds from another."""

    title = "The index holds another folder's photos"
