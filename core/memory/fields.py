"""The payload fields both vector stores index and filter on (Qdrant Edge and the Qdrant server)."""

from __future__ import annotations

# ``owner_id`` is the tenant key: a tenant index keeps each owner's points together on disk and lets
# the planner search one owner's subgraph.
KEYWORD_FIELDS = ("user_id", "agent_id", "run_id", "actor_id", "type", "tags", "people", "hash")
TENANT_FIELD = "owner_id"
INTEGER_FIELDS = ("importance",)
DATETIME_FIELDS = ("created_at", "updated_at", "expires_at", "expiration_date")  # ISO-8601 strings (mem0)
TEXT_FIELD = "data"  # lowercase word index: backs ``icontains`` on the memory text
CREATED_AT = "created_at"
DENSE = ""  # the unnamed dense vector, as mem0's own Qdrant store names it
SPARSE = "bm25"
