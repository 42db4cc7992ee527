"""Alembic environment. The app passes its own connection; the CLI builds one from settings."""

from __future__ import annotations

from alembic import context

from core.schema import metadata

config = context.config


def _run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:  # `alembic upgrade head` from the shell: use the configured database
    from core.storage import database_url_for
    from core.config import get_settings
    from core.db import make_engine

    engine = make_engine(database_url_for(get_settings()))
    with engine.begin() as conn:
        _run(conn)
