"""Alembic, run programmatically: ``upgrade(store)`` brings the schema to head."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

# Alembic logs every plugin and revision at INFO; a server start should not.
logging.getLogger("alembic").setLevel(logging.WARNING)

from alembic import command  # noqa: E402
from alembic.config import Config  # noqa: E402

if TYPE_CHECKING:
    from dockyard.state.store import Store

MIGRATIONS = Path(__file__).with_name("migrations")


def config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(store: Store) -> None:
    cfg = config(store.url)
    with store.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
