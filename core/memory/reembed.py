"""Moving a memory store to another embedder without losing a memory: ``python -m core reembed``.

Run it with the app stopped, after setting ``OPTIMUS_EMBEDDER`` (and ``OPTIMUS_EMBEDDING_DIMS``) to
the new embedder. For ``memories`` and mem0's ``memories_entities`` twin it

1. reads every point (id and payload; the payload holds the text in ``data``),
2. embeds the texts in batches with the new embedder (through mem0's factory, like the app),
3. writes them with the same ids and payloads into a new shard or collection of the new size,
   through the production insert path, which adds the BM25 sparse vectors,
4. checks the new copy holds exactly the ids of the old one, then
5. swaps atomically:

   * **embedded** (Qdrant Edge): the new shards are built in ``vectors/.reembed/``; a journal
     (``vectors/reembed.json``) is written, the live shard is renamed to
     ``vectors/memories.before-reembed-<time>`` (kept for rollback) and the new one into its place,
     then the journal is removed. While the journal exists the app refuses to start.
   * **server** (Qdrant): a new collection ``memories_<dims>d_<time>`` (its metadata says which
     embedder and whether it is complete), then the alias ``memories`` is pointed at it in one
     atomic alias update and only then the old collection is dropped. The first time, ``memories``
     is a collection itself and Qdrant lets no alias take a collection's name, so that collection
     is dropped just before the alias is made; the app refuses to start in between.

Safe to re-run after a crash: a build goes on where it stopped (points already copied unchanged
are not embedded again), a half-done swap is finished, and a store already on the configured
embedder is left alone. The old store is never changed before the new one is complete.
Memory history rows are not touched: the ids stay the same.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from core.errors import AppError, ConfigError, ProviderUnavailable, StoreUnavailable
from core.memory.embedders import EmbedderChoice
from core.memory.store_embedding import (
    COLLECTION,
    ENTITIES,
    ENTITIES_SUFFIX,
    JOURNAL_FILE,
    REEMBED_COMMAND,
    STAGING_DIR,
    edge_embedding,
    fsync_dir,
    record_edge_embedding,
    record_server_embedding,
    reembed_collections,
    resolve_collection,
    server_embedding,
    server_meta,
    write_atomically,
)

log = logging.getLogger(__name__)

BATCH_SIZE = 100
_PROGRESS_EVERY = 1.0  # seconds between progress lines


@dataclass(frozen=True, slots=True)
class ReembedReport:
    """What a run did. ``changed`` is False when the store already used the configured embedder."""

    changed: bool
    source: str
    target: str
    counts: dict[str, int] = field(default_factory=dict)  # collection -> points it holds now
    embedded: int = 0  # texts sent to the embedder in this run
    seconds: float = 0.0
    kept: str | None = None  # where the old store is, or what became of it

    @property
    def memories(self) -> int:
        return self.counts.get(COLLECTION, 0)

    def summary(self) -> str:
        if not self.changed:
            return f"Nothing to re-embed: the vector store already uses {self.target}."
        parts = [f"Re-embedded the vector store from {self.source} to {self.target}: "
                 + ", ".join(f"{n:,} in {name}" for name, n in self.counts.items())
                 + f" ({self.embedded:,} texts embedded in {self.seconds:.1f} s)."]
        if self.kept:
            parts.append(self.kept)
        return " ".join(parts)


class _Points(Protocol):
    """One collection's points, read and written by id."""

    def ids(self) -> list[str]: ...
    def payloads(self, ids: Sequence[str]) -> dict[str, dict]: ...
    def count(self) -> int: ...
    def insert(self, vectors: list, payloads: list[dict], ids: list[str]) -> None: ...
    def delete(self, ids: Sequence[str]) -> None: ...


class _EdgePoints:
    def __init__(self, store: Any) -> None:
        self.store = store

    def ids(self) -> list[str]:
        return self.store.ids(limit=1 << 62)

    def payloads(self, ids: Sequence[str]) -> dict[str, dict]:
        out: dict[str, dict] = {}
        for point_id in ids:
            try:
                hit = self.store.get(point_id)
            except Exception:  # a payload Edge cannot decode: reported as unreadable by the caller
                continue
            if hit is not None:
                out[point_id] = hit.payload
        return out

    def count(self) -> int:
        return self.store.count()

    def insert(self, vectors: list, payloads: list[dict], ids: list[str]) -> None:
        self.store.insert(vectors=vectors, payloads=payloads, ids=ids)

    def delete(self, ids: Sequence[str]) -> None:
        for point_id in ids:
            self.store.delete(point_id)


class _ServerPoints:
    def __init__(self, client: Any, name: str, store: Any = None) -> None:
        self.client, self.name, self.store = client, name, store

    def ids(self) -> list[str]:
        out: list[str] = []
        offset = None
        while True:
            records, offset = self.client.scroll(self.name, limit=1_000, offset=offset, with_payload=False,
                                                 with_vectors=False)
            out.extend(str(r.id) for r in records)
            if offset is None or not records:
                return out

    def payloads(self, ids: Sequence[str]) -> dict[str, dict]:
        try:
            records = self.client.retrieve(self.name, list(ids), with_payload=True, with_vectors=False)
        except RecursionError:  # one payload nested too deeply to decode: read the others one by one
            records = []
            for point_id in ids:
                try:
                    records.extend(self.client.retrieve(self.name, [point_id], with_payload=True, with_vectors=False))
                except RecursionError:
                    continue
        return {str(r.id): dict(r.payload or {}) for r in records}

    def count(self) -> int:
        return int(self.client.count(self.name, exact=True).count)

    def insert(self, vectors: list, payloads: list[dict], ids: list[str]) -> None:
        self.store.insert(vectors=vectors, payloads=payloads, ids=ids)

    def delete(self, ids: Sequence[str]) -> None:
        from qdrant_client import models

        self.client.delete(self.name, points_selector=models.PointIdsList(points=list(ids)))


def _unused(taken: Callable[[str], bool]) -> str:
    """A UTC time stamp for a new name, with a counter if a run in the same second took it."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    candidate, n = stamp, 1
    while taken(candidate):
        n += 1
        candidate = f"{stamp}-{n}"
    return candidate


def _describe(exc: BaseException) -> str:
    """An exception named without its message, which may quote part of a key."""
    status = getattr(exc, "status_code", None) or getattr(getattr(exc, "response", None), "status_code", None)
    return f"{type(exc).__name__}" + (f", HTTP {status}" if status else "")


class _Reembed:
    """The copy and check shared by both backends."""

    def __init__(self, choice: EmbedderChoice, embedder: Any, *, batch_size: int = BATCH_SIZE,
                 progress: Callable[[str], None] = print) -> None:
        if batch_size < 1:
            raise ConfigError("The re-embed batch size must be at least 1.")
        self.choice, self.embedder, self.batch_size, self.progress = choice, embedder, batch_size, progress
        self.embedded = 0

    def _embed(self, texts: list[str]) -> list[list[float]]:
        try:
            vectors = self.embedder.embed_batch(texts, "add")
        except AppError:
            raise
        except Exception as exc:
            raise ProviderUnavailable(
                f"The embedder {self.choice.id} failed ({_describe(exc)}). The old store is unchanged; what was "
                f"re-embedded so far is kept, and running `{REEMBED_COMMAND}` again goes on from there.") from exc
        if len(vectors) != len(texts):
            raise ProviderUnavailable(f"The embedder {self.choice.id} returned {len(vectors)} vectors for "
                                      f"{len(texts)} texts; the old store is unchanged.")
        for vector in vectors:
            if len(vector) != self.choice.dims:
                raise ConfigError(
                    f"The embedder {self.choice.id} returns {len(vector)}-d vectors, but {self.choice.dims} were "
                    f"expected (OPTIMUS_EMBEDDING_DIMS, or the known size of the model). Set "
                    f"OPTIMUS_EMBEDDING_DIMS={len(vector)}; the old store is unchanged.")
        self.embedded += len(texts)
        return [list(map(float, v)) for v in vectors]

    def copy(self, what: str, source: _Points, target: _Points) -> int:
        """Make ``target`` hold exactly ``source``'s points, embedded anew; returns how many it holds."""
        ids = source.ids()
        wanted = set(ids)
        present = set(target.ids())
        stale = sorted(present - wanted)
        if stale:  # left by an earlier run and since deleted from the source
            target.delete(stale)
            present -= set(stale)
        unreadable: list[str] = []
        started = last = time.perf_counter()
        done = 0
        for start in range(0, len(ids), self.batch_size):
            chunk = ids[start:start + self.batch_size]
            payloads = source.payloads(chunk)
            copied = target.payloads([i for i in chunk if i in present]) if present else {}
            todo = []
            for point_id in chunk:
                payload = payloads.get(point_id)
                text = payload.get("data") if payload is not None else None
                if not isinstance(text, str) or not text:
                    unreadable.append(point_id)
                elif copied.get(point_id) != payload:
                    todo.append(point_id)
            if todo:
                vectors = self._embed([payloads[i]["data"] for i in todo])
                target.insert(vectors, [payloads[i] for i in todo], todo)
            done += len(chunk)
            now = time.perf_counter()
            if now - last >= _PROGRESS_EVERY or done == len(ids):
                last = now
                self.progress(f"{what}: {done:,}/{len(ids):,} points ({done / max(now - started, 1e-9):,.0f}/s)")
        if unreadable:
            raise StoreUnavailable(
                f"{len(unreadable)} point(s) of {what} have no readable text, so they cannot be re-embedded: "
                f"{', '.join(unreadable[:20])}{' …' if len(unreadable) > 20 else ''}. Nothing was changed; delete "
                f"them (their payload is damaged) and run `{REEMBED_COMMAND}` again.")
        held, count = set(target.ids()), target.count()
        if held != wanted or count != len(ids) or source.count() != len(ids):
            raise StoreUnavailable(
                f"The re-embedded copy of {what} does not match the original ({count} points vs {len(ids)}, "
                f"{len(wanted - held)} missing, {len(held - wanted)} extra). Nothing was changed; run "
                f"`{REEMBED_COMMAND}` again.")
        return count


class EdgeReembed(_Reembed):
    """Re-embed the Qdrant Edge shards under ``vectors`` (the data dir's ``vectors/``)."""

    def __init__(self, vectors: Path, choice: EmbedderChoice, embedder: Any, **options: Any) -> None:
        super().__init__(choice, embedder, **options)
        self.root = Path(vectors)
        self.staging = self.root / STAGING_DIR
        self.journal = self.root / JOURNAL_FILE

    def run(self) -> ReembedReport:
        started = time.perf_counter()
        if self.journal.exists():
            plan = json.loads(self.journal.read_text(encoding="utf-8"))
            self.progress("Finishing an interrupted swap of the shards.")
            return self._swap(plan, started)
        live = edge_embedding(self.root / COLLECTION)
        if live is None:
            return ReembedReport(False, "no store yet", self.choice.label)
        if live.embedder == self.choice.id and live.dims == self.choice.dims:
            shutil.rmtree(self.staging, ignore_errors=True)  # a build abandoned before its swap
            return ReembedReport(False, live.label, self.choice.label)
        built = edge_embedding(self.staging / COLLECTION)
        if built is not None and (built.embedder, built.dims) != (self.choice.id, self.choice.dims):
            shutil.rmtree(self.staging)  # an earlier build for another embedder
        names = [n for n in (COLLECTION, ENTITIES) if edge_embedding(self.root / n) is not None]
        self.progress(f"Re-embedding {', '.join(names)} from {live.label} to {self.choice.label}; "
                      f"new shards are built in {self.staging}.")
        counts = {name: self._build(name) for name in names}
        suffix = _unused(lambda s: any((self.root / f"{n}.before-reembed-{s}").exists() for n in names))
        plan = {"from": live.label, "to": self.choice.label, "counts": counts,
                "moves": [{"live": n, "staged": f"{STAGING_DIR}/{n}", "kept": f"{n}.before-reembed-{suffix}"}
                          for n in names]}
        write_atomically(self.journal, plan)
        return self._swap(plan, started)

    def _build(self, name: str) -> int:
        from core.memory.vector_edge import QdrantEdgeStore

        old = edge_embedding(self.root / name)
        assert old is not None
        # Opening the live shard takes its lock: a running app makes this fail with a clear message.
        source = QdrantEdgeStore(collection_name=name, path=str(self.root), embedding_model_dims=old.dims)
        try:
            record_edge_embedding(self.staging / name, self.choice)
            target = QdrantEdgeStore(collection_name=name, path=str(self.staging),
                                     embedding_model_dims=self.choice.dims)
            try:
                count = self.copy(name, _EdgePoints(source), _EdgePoints(target))
                target.optimize()  # build the index now, not at the app's first write
            finally:
                target.close()
        finally:
            source.close()
        return count

    def _swap(self, plan: dict[str, Any], started: float) -> ReembedReport:
        kept = []
        for move in plan["moves"]:
            staged, live, old = (self.root / move["staged"], self.root / move["live"], self.root / move["kept"])
            if staged.exists():
                if live.exists():
                    if old.exists():
                        raise ConfigError(f"Cannot finish the re-embed: {live} and {old} both exist. Move one of "
                                          f"them away and run `{REEMBED_COMMAND}` again.")
                    live.rename(old)
                staged.rename(live)
                fsync_dir(self.root)
            kept.append(str(old))
        self.journal.unlink()
        fsync_dir(self.root)
        shutil.rmtree(self.staging, ignore_errors=True)
        note = (f"The old shards are kept for rollback in {', '.join(kept)}: to roll back, stop Optimus, move "
                f"{self.root / COLLECTION} away, rename the kept shard(s) back and set OPTIMUS_EMBEDDER to the "
                f"previous embedder. Delete them once you are happy.")
        return ReembedReport(True, plan["from"], plan["to"], dict(plan.get("counts") or {}), self.embedded,
                             time.perf_counter() - started, note)


class ServerReembed(_Reembed):
    """Re-embed the Qdrant server collections behind ``memories`` into new ones and switch the alias."""

    def __init__(self, client: Any, choice: EmbedderChoice, embedder: Any, **options: Any) -> None:
        super().__init__(choice, embedder, **options)
        self.client = client

    def _ours(self, name: str) -> bool:
        meta = server_meta(self.client, name)
        return (meta.get("embedder"), meta.get("dims")) == (self.choice.id, self.choice.dims)

    def run(self) -> ReembedReport:
        started = time.perf_counter()
        source = resolve_collection(self.client, COLLECTION)
        if source is None:  # interrupted between dropping the original collection and making the alias
            ready = [n for n in reembed_collections(self.client, state="ready") if self._ours(n)]
            if not ready:
                return ReembedReport(False, "no collection yet", self.choice.label)
            self.progress(f"Finishing an interrupted re-embed: pointing '{COLLECTION}' at {ready[-1]}.")
            return self._swap(None, ready[-1], "the previous embedder", {}, started)
        found = server_embedding(self.client, source)
        if (found.embedder, found.dims) == (self.choice.id, self.choice.dims):
            self._drop_replaced(source)  # left over if the last run stopped before dropping it
            return ReembedReport(False, found.label, self.choice.label)
        target = None
        for name in reembed_collections(self.client, state="building"):
            if self._ours(name) and target is None:
                target = name  # an earlier build for this embedder: go on with it
            else:
                self._drop(name)
        if target is None:
            from core.memory.vector_server import ensure_memory_collections

            prefix = f"{COLLECTION}_{self.choice.dims}d_"
            target = prefix + _unused(lambda s: self.client.collection_exists(prefix + s))
            ensure_memory_collections(self.client, target, self.choice.dims, metadata={
                "optimus": {"embedder": self.choice.id, "dims": self.choice.dims, "state": "building"}})
        self.progress(f"Re-embedding Qdrant collection {source!r} from {found.label} to {self.choice.label} "
                      f"into {target!r}.")
        counts = {}
        pairs = [(COLLECTION, source, target)]
        if self.client.collection_exists(source + ENTITIES_SUFFIX):
            pairs.append((ENTITIES, source + ENTITIES_SUFFIX, target + ENTITIES_SUFFIX))
        for what, old, new in pairs:
            counts[what] = self.copy(what, _ServerPoints(self.client, old), self._writable(new))
        record_server_embedding(self.client, target, self.choice, state="ready", replaces=source)
        return self._swap(source, target, found.label, counts, started)

    def _writable(self, name: str) -> _ServerPoints:
        # mem0's own Qdrant store writes the points, with the in-process BM25 encoder the app uses.
        from mem0.vector_stores.qdrant import Qdrant

        from core.memory.vector_server import enable_keyword_search

        store = enable_keyword_search(Qdrant(collection_name=name, embedding_model_dims=self.choice.dims,
                                             client=self.client))
        return _ServerPoints(self.client, name, store)

    def _swap(self, source: str | None, target: str, was: str, counts: dict[str, int],
              started: float) -> ReembedReport:
        from qdrant_client import models

        aliases = {a.alias_name: a.collection_name for a in self.client.get_aliases().aliases}
        if source == COLLECTION:
            # Qdrant renames no collection and lets no alias take a collection's name: the original
            # collection goes first (its copy is complete and checked); the app refuses to start until
            # the alias exists, and a re-run makes it.
            for name in (COLLECTION, ENTITIES):
                if name not in aliases and self.client.collection_exists(name):
                    self.client.delete_collection(name)
        operations: list[Any] = []
        for alias, name in ((COLLECTION, target), (ENTITIES, target + ENTITIES_SUFFIX)):
            if alias in aliases:
                operations.append(models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=alias)))
            operations.append(models.CreateAliasOperation(
                create_alias=models.CreateAlias(collection_name=name, alias_name=alias)))
        self.client.update_collection_aliases(change_aliases_operations=operations)  # one atomic switch
        if source not in (None, COLLECTION):
            self._drop(source)
        if source == COLLECTION:
            kept = (f"'{COLLECTION}' is now an alias of {target!r}; the original collection was dropped once the new "
                    f"one was complete. To roll back, set OPTIMUS_EMBEDDER back and run `{REEMBED_COMMAND}` again.")
        else:
            kept = (f"'{COLLECTION}' now points to {target!r}; the old collection was dropped after the switch. "
                    f"To roll back, set OPTIMUS_EMBEDDER back and run `{REEMBED_COMMAND}` again.")
        return ReembedReport(True, was, self.choice.label, counts, self.embedded, time.perf_counter() - started, kept)

    def _drop(self, name: str) -> None:
        for each in (name, name + ENTITIES_SUFFIX):
            if self.client.collection_exists(each):
                self.client.delete_collection(each)

    def _drop_replaced(self, live: str) -> None:
        replaced = server_meta(self.client, live).get("replaces")
        aliased = {a.collection_name for a in self.client.get_aliases().aliases}
        if isinstance(replaced, str) and replaced not in (COLLECTION, live) and replaced not in aliased:
            self._drop(replaced)


__all__ = ["EdgeReembed", "ReembedReport", "ServerReembed"]
