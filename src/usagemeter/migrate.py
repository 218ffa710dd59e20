"""Forward-only numbered migrations, applied in order under an advisory lock."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg

from usagemeter.db import queries

Q = queries(__file__)
MIGRATIONS = Path(__file__).with_name("migrations")


def available() -> list[Path]:
    """Every migration file, in the order it applies."""
    return sorted(MIGRATIONS.glob("[0-9][0-9][0-9][0-9]_*.sql"))


def migrate(conn: psycopg.Connection[Any]) -> list[str]:
    """Apply the pending migrations in one transaction; return the versions applied."""
    done: list[str] = []
    with conn.transaction():
        conn.execute(Q.lock)
        conn.execute(Q.create_table)
        applied = {r["version"] for r in conn.execute(Q.applied).fetchall()}
        for path in available():
            if path.stem in applied:
                continue
            conn.execute(path.read_text().encode())
            conn.execute(Q.record, {"version": path.stem})
            done.append(path.stem)
    return done


def pending(conn: psycopg.Connection[Any]) -> list[str]:
    """Migrations not yet applied (all of them on an empty database)."""
    row = conn.execute(Q.table_exists).fetchone()
    applied = set()
    if row and row["exists"]:
        applied = {r["version"] for r in conn.execute(Q.applied).fetchall()}
    return [p.stem for p in available() if p.stem not in applied]
