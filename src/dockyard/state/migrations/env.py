"""Alembic environment: runs on the connection ``dockyard.state.migrate`` hands in."""

from alembic import context

from dockyard.state.schema import metadata

config = context.config
connection = config.attributes.get("connection")

if connection is None:  # `alembic` CLI use (autogenerate during development)
    from sqlalchemy import create_engine

    engine = create_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.begin() as conn:
        context.configure(connection=conn, target_metadata=metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
else:
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
