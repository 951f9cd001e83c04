"""The one place the policy store is opened from settings: a Qdrant server, or Qdrant Edge.

`QDRANT_URL` set: the collection on that server or cluster, through qdrant-client. Unset:
a Qdrant Edge shard under `QDRANT_PATH`, embedded in this process. A store written by an
earlier dispatchbot in qdrant-client's local mode is moved into Edge from its own points the
first time it is opened, with one line saying so.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from qdrant_client import QdrantClient
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from retrieval.edge_store import EdgeStore
from retrieval.errors import StoreUnavailableError
from retrieval.server_store import ServerStore
from retrieval.store import ClusterLayout, PolicyStore
from store.settings import Settings

log = logging.getLogger(__name__)

EDGE_FOLDER = "edge"  # under QDRANT_PATH; the local-mode files sat in QDRANT_PATH itself


@contextmanager
def open_store(settings: Settings) -> Iterator[PolicyStore]:
    """The policy store for these settings, closed on exit (Edge holds a lock till then)."""
    store = _server_store(settings) if settings.qdrant_url else _edge_store(settings)
    try:
        yield store
    finally:
        store.close()


def _server_store(settings: Settings) -> PolicyStore:
    api_key = settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None
    client = QdrantClient(url=settings.qdrant_url, api_key=api_key)
    try:
        client.get_collections()  # fail here, with a clear message, not mid-ingest
    except (ResponseHandlingException, UnexpectedResponse) as error:
        client.close()
        raise StoreUnavailableError(
            f"cannot use the Qdrant server at {settings.qdrant_url} ({error}); check that it "
            "is running, and QDRANT_URL and QDRANT_API_KEY, or unset QDRANT_URL to use the "
            "embedded store on disk"
        ) from error
    return ServerStore(client, settings.qdrant_collection, str(settings.qdrant_url))


def _edge_store(settings: Settings) -> PolicyStore:
    root = settings.qdrant_path
    assert root is not None, "Settings derives qdrant_path from the data dir"
    store = EdgeStore(root / EDGE_FOLDER, settings.qdrant_collection)
    try:
        if not store.exists():
            move_local_mode_store(root, store)
    except BaseException:
        store.close()
        raise
    return store


def move_local_mode_store(root: Path, store: EdgeStore) -> int:
    """Rebuild an earlier local-mode collection in `store`; returns the points moved.

    The old files are kept beside it, renamed, until someone deletes them.
    """
    old_folder = root / "collection" / store.collection
    if not (old_folder / "storage.sqlite").exists():
        return 0
    try:
        client = QdrantClient(path=str(root))
    except RuntimeError as error:  # local mode refuses a second client on its folder
        raise StoreUnavailableError(
            f"an earlier dispatchbot still holds the local store at {root}: stop it, then "
            "start this one to move the policies into the embedded engine"
        ) from error
    old = ServerStore(client, store.collection, str(root))
    try:
        shape = old.shape()
        if shape.dense_size is None or shape.embedding_model is None:
            log.warning(
                "collection %r in the earlier local store at %s was not made by dispatchbot; "
                "it is left as it is and the embedded store starts empty",
                store.collection,
                root,
            )
            return 0
        store.create(shape.dense_size, shape.embedding_model, ClusterLayout())
        points = list(old.export())
        store.upsert(points)
        moved = len(points)
        store.mark_format(shape.store_format)  # a format upgrade follows, if one is due
        store.optimize()
    finally:
        old.close()
    kept = root / f"local-mode-backup-{store.collection}"
    shutil.move(str(old_folder), kept)
    log.warning(
        "moved %d chunks of collection %r from the earlier local store into %s; "
        "the old files are in %s (delete them once satisfied)",
        moved,
        store.collection,
        store.engine,
        kept,
    )
    return moved
