"""What exact sums cost: every rollup report read side by side on the same data with the
buckets of release 0.2.0 (numeric sums, which never overflow) and of 0.1.0 (bigint sums).

    .venv/bin/python bench/sums.py [--rows 1000000] [--runs 25] [--reuse]

Loads one database as bench/run.py does (a throwaway PostgreSQL 15 unless DATABASE_URL is
set), copies it, and turns the copy back into 0.1.0's buckets and report functions (from
migration 0001_baseline). Both answer the same rows (checked); the table gives each read's
median over `runs`, the two alternating in blocks of 5.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from psycopg.conninfo import make_conninfo

sys.path.insert(0, str(Path(__file__).parent))
import run

from usagemeter.db import connect
from usagemeter.migrate import available

BUCKETS = ("usage_rollup", "usage_rollup_ws", "usage_day", "usage_day_ws", "usage_head_ws")
TOKENS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")
OLD = ("usage_sum", "usage_unpriced_tokens", "usage_cost_units", "usage_report")


def old_definitions() -> str:
    """0.1.0's definitions of what 0002 changed of the sums, from its baseline."""
    baseline = available()[0].read_text()
    blocks = re.split(r"\n(?=CREATE )", baseline)
    keep = [b for b in blocks if re.match(rf"CREATE (FUNCTION|AGGREGATE) ({'|'.join(OLD)})", b)]
    return "\n".join(
        b.split("\n\n--")[0].replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION") for b in keep
    )


def to_bigint(url: str) -> None:
    with connect(url) as conn, conn.transaction():
        conn.execute("SET LOCAL check_function_bodies = off")
        for name in ("usage_report", "usage_report_raw", "usage_report_rollup"):
            conn.execute(f"DROP FUNCTION {name}")
        for table in BUCKETS:
            cols = ", ".join(f"ALTER COLUMN {c} TYPE bigint" for c in TOKENS)
            conn.execute(f"ALTER TABLE {table} {cols}")
        conn.execute(old_definitions().encode())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=25)
    ap.add_argument("--reuse", action="store_true", help="measure the databases of a run before")
    args = ap.parse_args()
    with run.postgres() as server:
        numeric = make_conninfo(server, dbname="usagemeter_sums_numeric")
        bigint = make_conninfo(server, dbname="usagemeter_sums_bigint")
        if not args.reuse:
            run.build(server, numeric, "usagemeter_sums_numeric", args.rows)
            with connect(server) as admin:
                admin.execute("DROP DATABASE IF EXISTS usagemeter_sums_bigint WITH (FORCE)")
                admin.execute(
                    "CREATE DATABASE usagemeter_sums_bigint TEMPLATE usagemeter_sums_numeric"
                )
            to_bigint(bigint)
        with connect(numeric) as a, connect(bigint) as b:
            for conn in (a, b):
                conn.execute("VACUUM ANALYZE")
                conn.execute("CHECKPOINT")
            print(f"\n{args.rows:,} usage rows; median ms of {args.runs} runs, rollup path")
            run.side_by_side(a, b, args.runs, ("numeric sums (0.2.0)", "bigint sums (0.1.0)"))


if __name__ == "__main__":
    main()
