"""Development helper: regenerate migration 0001 from schema.py.

Only valid while no release has shipped 0001; after that, schema changes get a
new revision (`alembic revision --autogenerate`) instead.
"""
import tempfile
from pathlib import Path

from alembic import command

from dockyard.state.migrate import MIGRATIONS, config

versions = MIGRATIONS / "versions"
for old in versions.glob("0001_*.py"):
    old.unlink()
with tempfile.TemporaryDirectory() as d:
    cfg = config(f"sqlite:///{d}/empty.db")
    command.revision(cfg, message="initial schema", autogenerate=True, rev_id="0001")
for new in versions.glob("0001_*.py"):
    print("wrote", new.relative_to(Path.cwd()))
