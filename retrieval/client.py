"""The one place a QdrantClient is built from settings: a server at QDRANT_URL or local on disk."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from qdrant_client import QdrantClient
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from retrieval.errors import StoreUnavailableError
from store.settings import Settings


@contextmanager
def open_qdrant(settings: Settings) -> Iterator[QdrantClient]:
    """A connected client, closed on exit (local mode holds a lock on its folder till then)."""
    client = _server_client(settings) if settings.qdrant_url else _local_client(settings)
    try:
        yield client
    finally:
        client.close()


def _server_client(settings: Settings) -> QdrantClient:
    api_key = settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None
    client = QdrantClient(url=settings.qdrant_url, api_key=api_key)
    try:
        client.get_collections()  # fail here, with a clear message, not mid-ingest
    except (ResponseHandlingException, UnexpectedResponse) as error:
        client.close()
        raise StoreUnavailableError(
            f"cannot use the Qdrant server at {settings.qdrant_url} ({error}); check that it "
            "is running, and QDRANT_URL and QDRANT_API_KEY, or unset QDRANT_URL to use the "
            "local store on disk"
        ) from error
    return client


def _local_client(settings: Settings) -> QdrantClient:
    path = settings.qdrant_path
    assert path is not None, "Settings derives qdrant_path from the data dir"
    try:
        path.mkdir(parents=True, exist_ok=True)
        return QdrantClient(path=str(path))
    except RuntimeError as error:
        if "already accessed" not in str(error):
            raise
        raise StoreUnavailableError(
            f"another dispatchbot process holds the local Qdrant store at {path}; "
            "stop it or set QDRANT_URL to a server"
        ) from error
    except OSError as error:
        raise StoreUnavailableError(
            f"cannot open the local Qdrant store at {path} ({error.strerror}); "
            "set QDRANT_PATH or DISPATCHBOT_DATA_DIR to a writable folder"
        ) from error
