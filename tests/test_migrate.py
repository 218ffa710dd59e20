"""The schema and its migrations: both paths give one catalog; migrate is safe to rerun."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import make_conninfo
from typer.testing import CliRunner

from tests.conftest import World
from tests.scene import runtime_report
from usagemeter import rollup
from usagemeter.cli import app
from usagemeter.db import Row, connect
from usagemeter.migrate import (
    BASELINE,
    LEGACY_LAST,
    MigrationError,
    available,
    migrate,
    pending,
)

# Everything of the public schema that a migration can change, one row per object: tables
# and composite types, columns in their order (row types depend on it), constraints,
# indexes, functions with their whole definitions, aggregates, triggers.
CATALOG = """
SELECT 'relation' AS kind, c.relname AS name, c.relkind::text AS def
FROM pg_class c
WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'v', 'm', 'c', 'S', 'p')
UNION ALL
SELECT 'column', c.relname || '.' || lpad(a.attnum::text, 3, '0') || ' ' || a.attname,
       concat_ws(' ', format_type(a.atttypid, a.atttypmod),
                 CASE WHEN a.attnotnull THEN 'NOT NULL' END, pg_get_expr(d.adbin, d.adrelid),
                 nullif(a.attidentity, ''), nullif(a.attgenerated, ''))
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'v', 'm', 'c', 'p')
  AND a.attnum > 0 AND NOT a.attisdropped
UNION ALL
SELECT 'constraint', conrelid::regclass::text || '.' || conname, pg_get_constraintdef(oid)
FROM pg_constraint WHERE connamespace = 'public'::regnamespace
UNION ALL
SELECT 'index', indexrelid::regclass::text, pg_get_indexdef(indexrelid)
FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
WHERE c.relnamespace = 'public'::regnamespace
UNION ALL
SELECT 'function', p.oid::regprocedure::text,
       CASE WHEN p.prokind = 'a'
            THEN (SELECT concat_ws(' ', g.aggtransfn, g.aggfinalfn, g.aggcombinefn,
                                   format_type(g.aggtranstype, NULL))
                  FROM pg_aggregate g WHERE g.aggfnoid = p.oid)
            ELSE pg_get_functiondef(p.oid) END
FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace
UNION ALL
SELECT 'trigger', tgrelid::regclass::text || '.' || tgname, pg_get_triggerdef(oid)
FROM pg_trigger
WHERE NOT tgisinternal
  AND tgrelid IN (SELECT oid FROM pg_class WHERE relnamespace = 'public'::regnamespace)
UNION ALL
SELECT 'row', 'model_price ' || model, concat_ws(' ', workspace_id, provider, effective_from,
       input_per_mtok, output_per_mtok, cache_read_per_mtok, cache_write_per_mtok)
FROM model_price
UNION ALL
SELECT 'row', 'usage_offset ' || offset_s, state FROM usage_offset
UNION ALL
SELECT 'row', 'rollup_state', concat_ws(' ', ticks, last_keys) FROM rollup_state
ORDER BY 1, 2, 3
"""


@pytest.fixture
def fresh(server_url: str, admin: psycopg.Connection[Row]) -> Iterator[Any]:
    """A factory of empty databases, dropped after the test."""
    names: list[str] = []

    def make(name: str) -> str:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {name}")
        names.append(name)
        return make_conninfo(server_url, dbname=name)

    yield make
    for name in names:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def catalog(url: str) -> list[tuple[str, str, str]]:
    """The catalog, but for the table that records migrations (made by migrate itself)."""
    with connect(url) as conn:
        rows = conn.execute(CATALOG).fetchall()
    return [(r["kind"], r["name"], r["def"]) for r in rows if "schema_migration" not in r["name"]]


def test_every_migration_applied_in_order_gives_the_schema(fresh: Any) -> None:
    from_schema, from_migrations = fresh("um_from_schema"), fresh("um_from_migrations")
    with connect(from_schema) as conn:
        assert migrate(conn) == [p.stem for p in available()]
    with connect(from_migrations) as conn, conn.transaction():
        conn.execute("SET LOCAL check_function_bodies = off")
        for path in available():
            conn.execute(path.read_text().encode())
    schema, migrations = catalog(from_schema), catalog(from_migrations)
    assert len(schema) > 400  # every kind of object is there to compare
    assert {kind for kind, _, _ in schema} == {
        "relation",
        "column",
        "constraint",
        "index",
        "function",
        "trigger",
        "row",
    }
    assert migrations == schema


def test_migrate_rerun_is_a_noop(db: psycopg.Connection[Row], db_url: str) -> None:
    assert migrate(db) == []
    assert pending(db) == []
    r = CliRunner().invoke(app, ["migrate"], env={"DATABASE_URL": db_url})
    assert (r.exit_code, r.output.strip()) == (0, "schema is up to date")
    applied = [
        row["version"] for row in db.execute("SELECT version FROM schema_migration ORDER BY 1")
    ]
    assert applied == [p.stem for p in available()]


def test_concurrent_migrators_on_an_empty_database(fresh: Any) -> None:
    url = fresh("um_fresh")
    results: list[Any] = []

    def run() -> None:
        with connect(url) as conn:
            results.append(migrate(conn))

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(len(r) for r in results) == [0, 0, len(available())]


LEGACY = [
    "0001_schema",
    "0002_auth",
    "0003_register",
    "0004_access",
    "0005_usage_window",
    "0006_pricing",
    "0007_price_catalogue",
    "0008_usage_keys",
    "0009_usage_report",
    "0010_rollup",
    "0011_usage_report_rollup",
    "0012_pg_cron",
    "0013_rollup_deltas",
    "0014_usage_day",
    "0015_report_statements",
    "0016_day_buckets_any_zone",
    "0017_covering_buckets",
    "0018_priced_day_buckets",
    "0019_day_buckets_to_sums",
    "0020_bigint_sums",
    "0021_workspace_utc_days",
    "0022_workspace_day_heads",
    "0023_day_buckets_per_zone",
    LEGACY_LAST,
]


def _release(url: str, versions: list[str]) -> psycopg.Connection[Row]:
    """A database as release 0.1.0 made it, recording `versions` as its migrations."""
    conn = connect(url)
    with conn.transaction():
        conn.execute("SET LOCAL check_function_bodies = off")
        conn.execute(available()[0].read_text().encode())
        conn.execute("CREATE TABLE schema_migration (version text PRIMARY KEY)")
        conn.execute("INSERT INTO schema_migration SELECT unnest(%s::text[])", (versions,))
    return conn


def _as_legacy(conn: psycopg.Connection[Row], versions: list[str]) -> None:
    """Record the development migrations instead of the releases' (a pre-0.1.0 data dir)."""
    conn.execute("DELETE FROM schema_migration")
    conn.execute("INSERT INTO schema_migration (version) SELECT unnest(%s::text[])", (versions,))


def test_a_release_database_keeps_its_usage_through_the_migrations(fresh: Any) -> None:
    with _release(fresh("um_release"), [BASELINE]) as db:
        world = World(db)
        ws = world.workspace()
        rt = world.runtime(ws)
        task = world.task(world.agent(ws, rt), rt)
        world.usage(task, tokens=(2**62, 5, 7, 0))
        db.execute("SELECT rollup()")
        world.usage(task, model="queued", tokens=(3, 0, 0, 0))  # moves with the queue
        # (the reports' current statements need the current schema)
        before = db.execute("SELECT input_tokens FROM task_usage ORDER BY 1").fetchall()
        assert migrate(db) == [p.stem for p in available()[1:]]
        after = runtime_report(db, rt, rollup=True)
        assert after == runtime_report(db, rt, rollup=False)
        assert sorted(r["input_tokens"] for r in after) == [r["input_tokens"] for r in before]
        assert [r["input_tokens"] for r in before] == [3, 2**62]
        assert rollup.drain(db) >= 1
        assert runtime_report(db, rt, rollup=True) == after


def test_a_database_at_the_last_development_migration_is_the_baseline(fresh: Any) -> None:
    with _release(fresh("um_legacy"), LEGACY) as db:
        db.execute("INSERT INTO workspace (name, slug) VALUES ('kept', 'kept')")
        assert pending(db) == [p.stem for p in available() if p.stem != BASELINE]
        assert migrate(db) == [p.stem for p in available() if p.stem != BASELINE]
        versions = [r["version"] for r in db.execute("SELECT version FROM schema_migration")]
        assert sorted(versions) == [p.stem for p in available()]
        assert db.execute("SELECT count(*) AS n FROM workspace WHERE slug = 'kept'").fetchone() == {
            "n": 1
        }


def test_an_older_development_database_is_refused_not_rebuilt(
    db: psycopg.Connection[Row], db_url: str
) -> None:
    _as_legacy(db, LEGACY[:10])
    with pytest.raises(MigrationError, match=r"older than release 0\.1\.0"):
        migrate(db)
    r = CliRunner().invoke(app, ["migrate"], env={"DATABASE_URL": db_url})
    assert r.exit_code == 1 and "cannot migrate: " in r.output, r.output
    versions = [r["version"] for r in db.execute("SELECT version FROM schema_migration")]
    assert sorted(versions) == LEGACY[:10]
