"""Long-term memory: vector stores, embedder, the two-phase pipeline and the MemoryService.

mem0 reads its telemetry switch when first imported; it is turned off here, before any module
of this package can import mem0. Nothing in Optimus reports usage anywhere.
"""

import os

os.environ["MEM0_TELEMETRY"] = "False"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
