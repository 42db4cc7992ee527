"""The vector collections of an install: which one is live, which embedder filled it, and the start check.

Names. Memories live in ``memories`` and mem0 keeps entity vectors in its ``memories_entities``
twin (mem0/memory/main.py ``_entity_collection_name``). Embedded, each is a Qdrant Edge shard
directory under ``<data dir>/vectors``. On a Qdrant server ``memories`` is a collection or, after
``python -m core reembed``, an alias of ``memories_<dims>d_<time>``; the app resolves it at start and
hands mem0 the collection it points to, so mem0's entity twin is ``<that collection>_entities``.

Record. A store remembers the embedder that filled it (:attr:`EmbedderChoice.id` and the vector
size): in ``optimus_embedder.json`` inside the Edge shard directory (Edge ignores foreign files,
and the record moves with the shard when it is renamed or backed up), and in the collection's
metadata on a Qdrant server. A store without a record predates it and was filled by the bundled
MiniLM, the only embedder there was (one of another size can only be checked for its size).

Start check. :func:`check_embedder` stops the start when the configured embedder is not the one
that filled the store (another vector size, or the same size from another model, which would make
every search silently wrong) and names the fix: ``python -m core reembed``. An interrupted re-embed
also stops the start (:func:`check_no_interrupted_reembed`, :func:`interrupted_server_reembeds`):
half a swap is never served.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import ConfigError
from core.memory.embedders import EmbedderChoice

log = logging.getLogger(__name__)

COLLECTION = "memories"
ENTITIES_SUFFIX = "_entities"
ENTITIES = COLLECTION + ENTITIES_SUFFIX
RECORD_FILE = "optimus_embedder.json"
JOURNAL_FILE = "reembed.json"  # in the vectors dir while an embedded re-embed swaps shards
STAGING_DIR = ".reembed"  # new shards are built here, never opened by the app
META_KEY = "optimus"
LEGACY_EMBEDDER = "local:all-MiniLM-L6-v2"
LEGACY_DIMS = 384
UNKNOWN_EMBEDDER = "an unrecorded embedder"  # no record and not MiniLM's size: only the size can be checked
REEMBED_COMMAND = "python -m core reembed"


@dataclass(frozen=True, slots=True)
class StoreEmbedding:
    """What a store holds: vectors of ``dims`` made by ``embedder`` (an :attr:`EmbedderChoice.id`)."""

    embedder: str
    dims: int
    recorded: bool  # False: no record, ``embedder`` is the assumed legacy MiniLM

    @property
    def label(self) -> str:
        return f"{self.embedder} ({self.dims}-d)"


def check_embedder(found: StoreEmbedding, choice: EmbedderChoice, *, where: str) -> None:
    """Raise :class:`ConfigError` unless ``choice`` is the embedder that filled the store at ``where``."""
    if found.dims != choice.dims:
        raise ConfigError(
            f"The vector store ({where}) holds {found.dims}-d vectors made by {found.embedder}, but "
            f"OPTIMUS_EMBEDDER={_setting(choice)} produces {choice.dims}-d vectors: searching it would fail. "
            f"Stop Optimus and run `{REEMBED_COMMAND}` to re-embed every memory with the new embedder "
            f"({found.dims} -> {choice.dims} dimensions, the same ids; no memory is lost), "
            f"or set OPTIMUS_EMBEDDER back to the embedder that filled it.")
    if found.embedder not in (choice.id, UNKNOWN_EMBEDDER):
        raise ConfigError(
            f"The vector store ({where}) was filled by {found.embedder}, but OPTIMUS_EMBEDDER={_setting(choice)} "
            f"is another model with the same size ({choice.dims}-d): its vectors are not comparable and every "
            f"search would return nonsense. Stop Optimus and run `{REEMBED_COMMAND}` to re-embed every memory, "
            f"or set OPTIMUS_EMBEDDER back.")


def _setting(choice: EmbedderChoice) -> str:
    return "local" if choice.id == LEGACY_EMBEDDER else choice.id


def _unrecorded(dims: int) -> StoreEmbedding:
    return StoreEmbedding(LEGACY_EMBEDDER if dims == LEGACY_DIMS else UNKNOWN_EMBEDDER, dims, False)


def _record(data: Any) -> tuple[str, int] | None:
    if isinstance(data, dict) and isinstance(data.get("embedder"), str) and isinstance(data.get("dims"), int):
        return data["embedder"], data["dims"]
    return None


# --- Qdrant Edge (embedded) -----------------------------------------------------------------------

def edge_embedding(shard: Path) -> StoreEmbedding | None:
    """What the Edge shard at ``shard`` holds, or None when there is no shard there."""
    from core.memory.edge_shards import stored_dims

    if not (shard / "edge_config.json").is_file():
        return None
    dims = stored_dims(shard)
    try:
        recorded = _record(json.loads((shard / RECORD_FILE).read_text(encoding="utf-8")))
    except (OSError, ValueError):
        recorded = None
    if recorded is not None:
        return StoreEmbedding(recorded[0], dims or recorded[1], True)
    if dims is None:
        raise ConfigError(f"The vector store at {shard} has a configuration this version cannot read "
                          "(edge_config.json without a vector size).")
    return _unrecorded(dims)


def record_edge_embedding(shard: Path, choice: EmbedderChoice) -> None:
    """Write the record into ``shard`` (created if missing, so a new shard has it from its start)."""
    shard.mkdir(parents=True, exist_ok=True)
    write_atomically(shard / RECORD_FILE, {"embedder": choice.id, "dims": choice.dims})


def write_atomically(path: Path, data: dict[str, Any]) -> None:
    """``path`` holds ``data`` as JSON, whole or not at all, even across a power cut."""
    partial = path.with_name(f".{path.name}.tmp")
    with open(partial, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(partial, path)
    fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def check_no_interrupted_reembed(vectors: Path) -> None:
    """Refuse to start while an embedded re-embed is between swapping its shards."""
    if (vectors / JOURNAL_FILE).exists():
        raise ConfigError(
            f"A re-embed of the vector store was interrupted while it swapped shards ({vectors / JOURNAL_FILE}). "
            f"Run `{REEMBED_COMMAND}` again to finish it before starting Optimus; no memory was lost.")


# --- Qdrant server --------------------------------------------------------------------------------

def resolve_collection(client: Any, name: str) -> str | None:
    """The collection ``name`` means: the target of the alias ``name``, the collection itself, or None."""
    for alias in client.get_aliases().aliases:
        if alias.alias_name == name:
            return alias.collection_name
    names = {c.name for c in client.get_collections().collections}
    return name if name in names else None


def server_meta(client: Any, name: str) -> dict[str, Any]:
    """Our part of the collection's metadata (``{}`` if none)."""
    metadata = getattr(client.get_collection(name).config, "metadata", None) or {}
    ours = metadata.get(META_KEY) if isinstance(metadata, dict) else None
    return dict(ours) if isinstance(ours, dict) else {}


def server_embedding(client: Any, name: str) -> StoreEmbedding:
    """What the existing collection ``name`` holds."""
    from core.memory.vector_server import dense_size

    dims = dense_size(client.get_collection(name))
    recorded = _record(server_meta(client, name))
    if recorded is not None:
        return StoreEmbedding(recorded[0], dims or recorded[1], True)
    if dims is None:
        raise ConfigError(f"Qdrant collection {name!r} has no unnamed dense vector; it was not made by Optimus.")
    return _unrecorded(dims)


def record_server_embedding(client: Any, name: str, choice: EmbedderChoice, **extra: Any) -> None:
    """Store the record (and ``extra``, e.g. ``state``) in the collection's metadata."""
    client.update_collection(name, metadata={META_KEY: {"embedder": choice.id, "dims": choice.dims, **extra}})


def reembed_collections(client: Any, *, state: str | None = None) -> list[str]:
    """Collections a re-embed made (``memories_<dims>d_<time>``), optionally only those in ``state``."""
    out = []
    for description in client.get_collections().collections:
        name = description.name
        if not name.startswith(COLLECTION + "_") or name.endswith(ENTITIES_SUFFIX):
            continue
        meta = server_meta(client, name)
        if meta.get("state") and (state is None or meta.get("state") == state):
            out.append(name)
    return sorted(out)


def interrupted_server_reembeds(client: Any) -> None:
    """Refuse to start when ``memories`` is gone but a finished re-embed waits to be swapped in."""
    ready = reembed_collections(client, state="ready")
    if ready:
        raise ConfigError(
            f"A re-embed of the Qdrant collection was interrupted: '{COLLECTION}' is missing and "
            f"{', '.join(ready)} waits to replace it. Run `{REEMBED_COMMAND}` again to finish before starting "
            f"Optimus; no memory was lost.")
