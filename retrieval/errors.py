"""Errors a user of retrieval can meet; each message says what went wrong and what to do."""

from __future__ import annotations

from store.errors import BadInput, ErrorKind


class RetrievalError(BadInput):
    """A problem with input, configuration or the vector store that the user can fix."""


class UnreadableDocumentError(RetrievalError):
    """One file could not be turned into a document; ingest reports it and goes on."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class StoreUnavailableError(RetrievalError):
    """The vector store cannot be opened or reached right now."""

    kind = ErrorKind.UNAVAILABLE


class StoreBusyError(StoreUnavailableError):
    """Another process (the running bot, usually) holds the embedded store."""


def server_failed(error: Exception) -> StoreUnavailableError:
    """A Qdrant server's failed request (qdrant-client's own errors) as dispatchbot's."""
    return StoreUnavailableError(f"the Qdrant server failed the request: {error}")


class NothingIngestedError(StoreUnavailableError):
    """Search or listing before any ingest."""


class CollectionMismatchError(RetrievalError):
    """The collection was built for another embedding model or layout."""
