"""The pages at the bench's database: `python bench/pages.py [--rows 1000000] [--reuse]`.

On the database of bench/run.py (built here unless --reuse finds it), one `usagemeter
serve` answers each page to a signed-in browser's requests, taken in turn: the median and
95th percentile end to end (one kept-alive connection), the server's own time (its
Server-Timing header: from the request's arrival to the rendered page), and the weight of
each page and of the assets a first visit loads, plain and gzipped.
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from psycopg.conninfo import make_conninfo

sys.path.insert(0, str(Path(__file__).parent))
from run import build, pick, postgres, serving

from usagemeter.auth import create_token
from usagemeter.db import connect
from usagemeter.migrate import migrate

ASSETS = ["/static/pages/pages.css", "/static/pages/pages.js", "/static/chart.js/chart.umd.min.js"]


class Browser:
    """A signed-in session over one kept-alive connection."""

    def __init__(self, port: int, token: str) -> None:
        self.c = http.client.HTTPConnection("127.0.0.1", port)
        self.cookies: dict[str, str] = {}
        form = self.get("/")[1].decode()
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', form)
        assert csrf
        body = urlencode({"token": token, "csrf_token": csrf.group(1), "next": "/"})
        status, _, _ = self.request("POST", "/signin", body)
        assert status == 303 and "usagemeter_session" in self.cookies

    def request(self, method: str, path: str, body: str | None = None) -> tuple[int, bytes, Any]:
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())}
        if body is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        self.c.request(method, path, body, headers)
        r = self.c.getresponse()
        data = r.read()
        for header in r.headers.get_all("set-cookie") or []:
            name, _, value = header.split(";")[0].partition("=")
            self.cookies[name] = value
        return r.status, data, r.headers

    def get(self, path: str) -> tuple[int, bytes, Any]:
        return self.request("GET", path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=40)
    ap.add_argument("--reuse", action="store_true", help="the database of an earlier run")
    args = ap.parse_args()
    with postgres() as server:
        name = f"usagemeter_bench_{args.rows}"
        url = make_conninfo(server, dbname=name)
        if args.reuse:
            with connect(url) as conn:
                migrate(conn)
        else:
            build(server, url, name, args.rows)
        with connect(url) as conn:
            s = pick(conn)
            slug = conn.execute("SELECT slug FROM workspace WHERE id = %s", (s["workspace_id"],))
            slug = slug.fetchone()["slug"]
            usage = conn.execute("SELECT count(*) AS n FROM task_usage").fetchone()["n"]
            token = create_token(
                conn,
                email="pages@example.com",
                name="",
                workspace_slug=slug,
                role="owner",
                daemon=False,
            )
        pages = {
            "workspace (30 days)": f"/w/{slug}",
            "runtimes": f"/w/{slug}/runtimes",
            "runtime (30 days)": f"/w/{slug}/runtimes/{s['runtime_id']}",
            "runtime (90 days)": f"/w/{slug}/runtimes/{s['runtime_id']}?days=90",
            "prices": f"/w/{slug}/prices",
        }
        with serving(url) as port:
            b = Browser(port, token)
            for path in pages.values():  # the first reads of a zone register it
                assert b.get(path)[0] == 200
            times: dict[str, list[float]] = {p: [] for p in pages}
            server: dict[str, list[float]] = {p: [] for p in pages}
            bodies: dict[str, bytes] = {}
            for _ in range(args.runs):
                for label, path in pages.items():
                    t = time.perf_counter()
                    status, body, headers = b.get(path)
                    times[label].append((time.perf_counter() - t) * 1000)
                    assert status == 200, body[:300]
                    dur = re.search(r"dur=([0-9.]+)", headers["Server-Timing"])
                    assert dur
                    server[label].append(float(dur.group(1)))
                    bodies[label] = body
            assets = {a: b.get(a)[1] for a in ASSETS}
        print(f"\n{usage:,} usage rows; workspace {slug}, runtime {s['runtime_id']} ({s['own']})")
        print(f"{args.runs} runs of each page in turn, one server process\n")
        print("| page | server ms (median) | end to end ms (median / p95) | HTML kB (gzip) |")
        print("|---|---|---|---|")
        for label in pages:
            med = statistics.median(times[label])
            p95 = statistics.quantiles(times[label], n=20)[-1]
            kb, gz = len(bodies[label]) / 1000, len(gzip.compress(bodies[label])) / 1000
            print(
                f"| {label} | {statistics.median(server[label]):.1f} | {med:.1f} / {p95:.1f}"
                f" | {kb:.0f} ({gz:.0f}) |"
            )
        print("\n| asset (loaded once, then cached) | kB | gzip kB |")
        print("|---|---|---|")
        for a, body in assets.items():
            print(f"| {a} | {len(body) / 1000:.0f} | {len(gzip.compress(body)) / 1000:.0f} |")


if __name__ == "__main__":
    main()
