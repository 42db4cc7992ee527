"""Per-user preferences, stored as one small JSON document per user."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pydantic
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Engine, insert, select, update

from core.errors import ValidationError
from core.schema import user_preferences


class Preferences(BaseModel):
    """What a person chose on the Settings page; None means "the install's default"."""

    model_config = ConfigDict(extra="ignore")

    default_model: str | None = Field(None, max_length=200)
    recall_top_k: int | None = Field(None, ge=0, le=50)
    auto_memory: bool = True  # learn from conversations automatically
    memory_ttl_days: int | None = Field(None, ge=1, le=3650)  # default expiry of learned memories
    # Memories never leave this machine: with a hosted model, no recall and no memory tools, and
    # learning uses the local model (or waits for one).
    memories_local_only: bool = False


class PreferenceStore:
    def __init__(self, engine: Engine, *, clock: Callable[[], datetime] | None = None) -> None:
        self._engine = engine
        self._clock = clock or (lambda: datetime.now(UTC))

    def get(self, user_id: str) -> Preferences:
        with self._engine.connect() as conn:
            raw = conn.execute(select(user_preferences.c.data).where(user_preferences.c.user_id == user_id)).scalar()
        if not raw:
            return Preferences()
        try:
            return Preferences.model_validate_json(raw)
        except pydantic.ValidationError:
            return Preferences()  # an old or damaged document: defaults, never a crash

    def set(self, user_id: str, prefs: Preferences | dict) -> Preferences:
        try:
            value = prefs if isinstance(prefs, Preferences) else Preferences.model_validate(prefs)
        except pydantic.ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first.get("loc", ()))
            raise ValidationError(f"{field}: {first.get('msg')}", field=field) from None
        data, now = value.model_dump_json(), self._clock()
        with self._engine.begin() as conn:
            changed = conn.execute(update(user_preferences).where(user_preferences.c.user_id == user_id)
                                   .values(data=data, updated_at=now)).rowcount
            if not changed:
                conn.execute(insert(user_preferences).values(user_id=user_id, data=data, updated_at=now))
        return value
