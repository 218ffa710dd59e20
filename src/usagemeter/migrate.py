"""The schema: loaded whole into a new database, else brought up to date by migrations.

`schema/*.sql` is the current definition of every table, function and trigger, one file
per concern. `migrations/NNNN_*.sql` are the changes between releases, applied in order to
databases made by an earlier release; tests/test_migrate.py proves that both paths give the
same catalog.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg

from usagemeter.db import queries

Q = queries(__file__)
HERE = Path(__file__).parent

# The schema's files in load order: each names only what earlier ones define (function
# bodies excepted, which are checked when called).
SCHEMA = (
    "model",
    "time",
    "pricing",
    "buckets",
    "capture",
    "tick",
    "reports",
    "activity",
    "sources",
    "health",
)

# Databases made before release 0.1.0 recorded 24 development migrations; the last of them
# left the catalog that the 0.1.0 baseline makes (tests/test_migrate.py).
LEGACY_LAST = "0024_runtime_zones_capped"
BASELINE = "0001_baseline"


class MigrationError(Exception):
    """The database's recorded migrations are none this version can bring up to date."""


def available() -> list[Path]:
    """Every migration file, in the order it applies."""
    return sorted((HERE / "migrations").glob("[0-9][0-9][0-9][0-9]_*.sql"))


def schema_sql() -> str:
    """The whole current schema as one script."""
    return "\n".join((HERE / "schema" / f"{name}.sql").read_text() for name in SCHEMA)


def migrate(conn: psycopg.Connection[Any]) -> list[str]:
    """Bring the database to the current schema in one transaction, under an advisory lock;
    return the versions applied (all of them for a new database, which loads the schema)."""
    versions = [p.stem for p in available()]
    with conn.transaction():
        conn.execute(Q.lock)
        conn.execute(Q.create_table)
        conn.execute(Q.defer_body_checks)
        applied = {r["version"] for r in conn.execute(Q.applied).fetchall()}
        if not applied:
            conn.execute(schema_sql().encode())
            conn.execute(Q.record_all, {"versions": versions})
            return versions
        if applied - set(versions):
            applied = _recognise_legacy(conn, applied)
        done = []
        for path in available():
            if path.stem not in applied:
                conn.execute(path.read_text().encode())
                conn.execute(Q.record_all, {"versions": [path.stem]})
                done.append(path.stem)
    return done


def _recognise_legacy(conn: psycopg.Connection[Any], applied: set[str]) -> set[str]:
    """A database at the last development migration is at the baseline: record it so."""
    if LEGACY_LAST not in applied:
        raise MigrationError(
            "this database's schema is older than release 0.1.0 or newer than this version "
            f"(recorded migrations: {', '.join(sorted(applied))})"
        )
    conn.execute(Q.forget_legacy, {"versions": sorted(applied)})
    conn.execute(Q.record_all, {"versions": [BASELINE]})
    return {BASELINE}


def pending(conn: psycopg.Connection[Any]) -> list[str]:
    """Migrations not yet applied (all of them on an empty database)."""
    row = conn.execute(Q.table_exists).fetchone()
    applied = set()
    if row and row["exists"]:
        applied = {r["version"] for r in conn.execute(Q.applied).fetchall()}
    if LEGACY_LAST in applied:
        applied = {BASELINE}
    return [p.stem for p in available() if p.stem not in applied]
