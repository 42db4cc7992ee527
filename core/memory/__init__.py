"""Long-term memory: vector stores, embedder, the two-phase pipeline and the MemoryService.

mem0 reads its telemetry switch when first imported; it is turned off here, before any module
of this package can import mem0. Nothing in Optimus reports usage anywhere.
"""

import os

os.environ["MEM0_TELEMETRY"] = "False"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import logging  # noqa: E402

# mem0 lemmatizes text for its own BM25 with spaCy when installed and warns on every process
# when it is not. Optimus's keyword search uses Qdrant's BM25 (qdrant_edge.Bm25 / the server's),
# so spaCy is deliberately not installed; the warning would only be noise.
logging.getLogger("mem0.utils.spacy_models").setLevel(logging.ERROR)
