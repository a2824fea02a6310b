"""Backups of the embedded SQLite database, taken and restored while it may be in use."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sqlalchemy.engine import make_url


class BackupError(Exception):
    """A backup or restore that cannot be done; the message says which problem it was."""

    def __init__(self, problem: str, **fields: object) -> None:
        super().__init__(problem)
        self.problem = problem
        self.fields = fields


def sqlite_path(database_url: str) -> Path | None:
    """Return the file of a SQLite database URL, or None for any other database."""
    url = make_url(database_url)
    if not url.drivername.startswith("sqlite") or not url.database:
        return None
    return Path(url.database)


def backup_sqlite(database: Path, out: Path) -> int:
    """Copy a live SQLite database, consistently, with SQLite's online backup; return its size."""
    if not database.is_file():
        raise BackupError("missing_database", path=database)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    partial.unlink(missing_ok=True)
    # Members' personal data is in the copy: readable by its owner only, from the start.
    partial.touch(mode=0o600)
    source = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        target = sqlite3.connect(partial)
        try:
            # The backup API copies page by page and restarts if a writer changes a page,
            # so the copy is one consistent moment even while the bot keeps writing.
            source.backup(target)
        finally:
            target.close()
    finally:
        source.close()
    partial.replace(out)  # a backup file is either whole or absent
    return out.stat().st_size


def restore_sqlite(backup: Path, database: Path) -> None:
    """Replace a SQLite database by a backup, after checking the backup is a thidua database."""
    if not backup.is_file():
        raise BackupError("missing_backup", path=backup)
    try:
        check = sqlite3.connect(f"file:{backup}?mode=ro", uri=True)
        try:
            ok = check.execute("PRAGMA integrity_check").fetchone()
            revision = check.execute("SELECT version_num FROM alembic_version").fetchone()
        finally:
            check.close()
    except sqlite3.DatabaseError:
        raise BackupError("not_a_backup", path=backup) from None
    if ok is None or ok[0] != "ok" or revision is None:
        raise BackupError("not_a_backup", path=backup)
    database.parent.mkdir(parents=True, exist_ok=True)
    source = sqlite3.connect(f"file:{backup}?mode=ro", uri=True)
    try:
        target = sqlite3.connect(database)
        try:
            source.backup(target)  # writes through SQLite: the WAL and locks stay coherent
        finally:
            target.close()
    finally:
        source.close()
