"""Policy changes reach a running bot: a local socket beside the embedded store.

The embedded store is one process's. While the bot runs it holds the store, so
`dispatchbot ingest`, `dispatchbot documents delete` and `dispatchbot verified approve` and
`retire` send their request here instead, and the bot applies it to the store it searches:
the next question is answered from the changed policy, with no restart. The socket is a
file only its owner may open, and the bot also checks the peer's user id, so only the
account that runs the bot (or root) may change its policies. Requests and replies are one
JSON line each.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import socketserver
import struct
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from retrieval.chunking import ChunkingOptions
from retrieval.client import EDGE_FOLDER
from retrieval.embedding import Embedder
from retrieval.errors import RetrievalError
from retrieval.ingest import EmbeddingProgress, FileOutcome, IngestReport, ingest_files
from retrieval.loaders import collect_files
from retrieval.store import ClusterLayout, PolicyStore, doc_key
from retrieval.verified import VerifiedEntry, index_verified, unindex_verified
from retrieval.versions import delete_versions, read_versions
from store import verified_answers
from store.database import Database
from store.errors import Unavailable
from store.settings import Settings

log = logging.getLogger(__name__)

_REPLY_LIMIT = 64 * 1024 * 1024
# An ingest embeds every changed chunk before it replies: minutes for a large library.
CLIENT_TIMEOUT_S = 1800.0


class PolicyAdminError(Unavailable):
    """The running bot could not be reached, or refused the change; the message says why."""


def admin_socket(settings: Settings) -> Path:
    """Where a bot holding the embedded store takes policy changes: beside the store."""
    assert settings.qdrant_path is not None, "Settings derives qdrant_path from the data dir"
    return settings.qdrant_path / EDGE_FOLDER / f"{settings.qdrant_collection}.sock"


def ingest_policies(
    paths: Sequence[Path],
    store: PolicyStore,
    embedder: Embedder,
    settings: Settings,
    on_progress: EmbeddingProgress | None = None,
) -> IngestReport:
    """Ingest files or folders with the configured chunking, as the CLI and the bot both do."""
    return ingest_files(
        collect_files(list(paths)),
        store=store,
        embedder=embedder,
        chunking=ChunkingOptions(settings.chunk_max_tokens, settings.chunk_overlap_tokens),
        batch_size=settings.embedding_batch_size,
        on_progress=on_progress,
        layout=ClusterLayout(
            shard_number=settings.qdrant_shard_number,
            replication_factor=settings.qdrant_replication_factor,
            write_consistency_factor=settings.qdrant_write_consistency_factor,
        ),
    )


def keep_verified_current(
    database: Database, store: PolicyStore, retired_docs: Sequence[str] = ()
) -> list[int]:
    """Hold back the verified answers whose policy moved on; returns their ids.

    Run after every change to the policy store, in the same command. A verified answer
    citing a version that is no longer a document's latest, or a retired document, turns
    stale and leaves search until someone re-approves or retires it. Search is changed
    inside the transaction, so an answer is never stale on record yet still served.
    """
    with database.transaction() as session:
        cited = verified_answers.cited_documents(session)
        # Only the documents verified answers cite: a large library is not read whole.
        current = {
            doc_key(doc_id): (versions[-1].version, versions[-1].title)
            for cited_id in cited
            for doc_id, versions in read_versions(store, cited_id).items()
        }
        staled = verified_answers.mark_stale(session, current, map(doc_key, retired_docs))
        for verified in staled:
            unindex_verified(store, verified.id)
        ids = [verified.id for verified in staled]
    if ids:
        log.info("policy change: %d verified answers held back as stale", len(ids))
    return ids


class PolicyAdminServer:
    """Serves ingest, delete and verified-answer requests for the store this process holds."""

    def __init__(
        self,
        path: Path,
        store: PolicyStore,
        embedder: Embedder,
        settings: Settings,
        database: Database,
    ) -> None:
        self._path = path
        self._store = store
        self._database = database
        self._embedder = embedder
        self._settings = settings
        self._writing = threading.Lock()  # one change at a time; searches go on meanwhile
        self._server: socketserver.ThreadingUnixStreamServer | None = None

    def start(self) -> PolicyAdminServer:
        self._path.unlink(missing_ok=True)  # left by a process that died; the store lock is ours
        previous = os.umask(0o177)  # the socket file is created 0600
        try:
            self._server = _Server(str(self._path), _Handler, admin=self)
        finally:
            os.umask(previous)
        threading.Thread(
            target=self._server.serve_forever, name="policy-admin", daemon=True
        ).start()
        log.info("policy changes accepted on %s", self._path)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._path.unlink(missing_ok=True)
            self._server = None

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        operation = request.get("op")
        with self._writing:
            if operation == "ingest":
                paths = [Path(path) for path in request.get("paths", [])]
                report = ingest_policies(paths, self._store, self._embedder, self._settings)
                stale = keep_verified_current(self._database, self._store)
                log.info(
                    "policy change: %d files, %d chunks written",
                    len(report.outcomes),
                    report.chunks_written,
                )
                return {
                    "outcomes": [outcome.to_json() for outcome in report.outcomes],
                    "stale_verified": stale,
                }
            if operation == "delete":
                doc_id, version = request["doc_id"], request.get("version")
                deleted = delete_versions(self._store, doc_id, version)
                keep_verified_current(self._database, self._store, [] if version else [doc_id])
                log.info("policy change: %d versions deleted", len(deleted))
                return {"deleted": deleted}
            if operation == "verified_index":
                entry = VerifiedEntry.from_payload(request["entry"])
                index_verified(self._store, self._embedder, entry)
                log.info("verified answer %d added to search", entry.verified_id)
                return {"indexed": entry.verified_id}
            if operation == "verified_unindex":
                verified_id = int(request["verified_id"])
                unindex_verified(self._store, verified_id)
                log.info("verified answer %d removed from search", verified_id)
                return {"unindexed": verified_id}
        raise PolicyAdminError(f"unknown request {operation!r}")


class _Server(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True

    def __init__(self, path: str, handler: type[_Handler], *, admin: PolicyAdminServer) -> None:
        super().__init__(path, handler)
        self.admin = admin


class _Handler(socketserver.StreamRequestHandler):
    server: _Server

    def handle(self) -> None:
        reply: dict[str, Any]
        if not _same_user(self.request):
            reply = {"error": "only the account that runs the bot may change its policies"}
        else:
            try:
                reply = self.server.admin.handle(json.loads(self.rfile.readline()))
            except (RetrievalError, PolicyAdminError, KeyError, ValueError) as error:
                reply = {"error": str(error)}
            except Exception as error:  # the bot keeps running; the operator hears why
                log.exception("policy change failed")
                reply = {"error": f"the bot failed to apply the change ({error}); see its log"}
        self.wfile.write(json.dumps(reply).encode() + b"\n")


def _same_user(connection: socket.socket) -> bool:
    credentials = connection.getsockopt(
        socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")
    )
    _pid, uid, _gid = struct.unpack("3i", credentials)
    return uid in (os.getuid(), 0)


def send(path: Path, request: dict[str, Any]) -> dict[str, Any]:
    """One request to the running bot's socket at `path`; its reply, or PolicyAdminError."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
            connection.settimeout(CLIENT_TIMEOUT_S)
            connection.connect(str(path))
            connection.sendall(json.dumps(request).encode() + b"\n")
            with connection.makefile("rb") as replies:
                line = replies.readline(_REPLY_LIMIT)
    except OSError as error:
        raise PolicyAdminError(
            f"another process holds the policy store but does not take changes at {path} "
            f"({error.strerror or error}); is it a `dispatchbot run` that is still starting? "
            "Try again, or stop it"
        ) from error
    if not line:
        raise PolicyAdminError(f"the running bot closed {path} without replying; see its log")
    reply: dict[str, Any] = json.loads(line)
    if "error" in reply:
        raise PolicyAdminError(f"the running bot refused the change: {reply['error']}")
    return reply


def send_ingest(path: Path, paths: Sequence[Path]) -> tuple[IngestReport, list[int]]:
    """The running bot's ingest report, and the verified answers it held back as stale."""
    reply = send(path, {"op": "ingest", "paths": [str(item.resolve()) for item in paths]})
    report = IngestReport(tuple(FileOutcome.from_json(fields) for fields in reply["outcomes"]))
    return report, [int(number) for number in reply.get("stale_verified", [])]


def send_delete(path: Path, doc_id: str, version: int | None) -> list[int]:
    reply = send(path, {"op": "delete", "doc_id": doc_id, "version": version})
    return [int(number) for number in reply["deleted"]]


def send_verified_index(path: Path, entry: VerifiedEntry) -> None:
    """Have the running bot add (or replace) a verified answer's searchable copy."""
    send(path, {"op": "verified_index", "entry": entry.payload()})


def send_verified_unindex(path: Path, verified_id: int) -> None:
    """Have the running bot take a verified answer out of search."""
    send(path, {"op": "verified_unindex", "verified_id": verified_id})
