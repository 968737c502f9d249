"""The database a bench runs on: an embedded PostgreSQL in a folder of its own, migrated, removed afterwards."""

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from tools import migrate
from tools.embedded import EmbeddedPostgres


@contextlib.contextmanager
def migrated_postgres(prefix: str) -> Iterator[str]:
    """The URL of a fresh embedded PostgreSQL with kefu's migrations applied; stopped and deleted on exit."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        with EmbeddedPostgres(root / "data") as server:
            url = server.url()
            migrate.upgrade(url)
            yield url
    finally:
        shutil.rmtree(root, ignore_errors=True)
