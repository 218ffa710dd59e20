"""Settings, read once from the environment into a frozen object."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Setting:
    env: str
    default: str
    help: str


def _default_data_dir() -> str:
    if os.geteuid() == 0:  # a system service's state (the embedded server's user reaches it)
        return "/var/lib/usagemeter"
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return str(Path(base) / "usagemeter")


# The one table of settings: it feeds Config, `usagemeter --help` and the README.
SETTINGS: tuple[Setting, ...] = (
    Setting(
        "DATABASE_URL",
        "",
        "PostgreSQL (15+) connection URL. Empty: run the embedded PostgreSQL in the data dir.",
    ),
    Setting(
        "USAGEMETER_DATA_DIR",
        _default_data_dir(),
        "Where the embedded PostgreSQL keeps its data (persistent across restarts).",
    ),
    Setting("USAGEMETER_HOST", "127.0.0.1", "Address `usagemeter serve` listens on."),
    Setting("USAGEMETER_PORT", "8080", "Port `usagemeter serve` listens on."),
    Setting("USAGEMETER_POOL_SIZE", "10", "Maximum database connections of the server."),
    Setting(
        "USAGEMETER_BATCH_MAX",
        "100000",
        "Most usage entries accepted by one POST /api/usage/batch request.",
    ),
    Setting(
        "USAGEMETER_MAX_BODY",
        str(32 * 1024 * 1024),
        "Largest request body in bytes; a larger one is refused with 413 before it is read.",
    ),
    Setting(
        "USAGEMETER_BODY_TIMEOUT",
        "60",
        "Seconds a request body may take to arrive; a slower one is refused with 408.",
    ),
    Setting(
        "USAGEMETER_STATEMENT_TIMEOUT",
        "30",
        "Seconds one database statement of a request may run; a longer one is cancelled (503).",
    ),
    Setting(
        "USAGEMETER_METRICS_TOKEN",
        "",
        "Bearer token /metrics requires when set (empty: /metrics is open, as scrapers expect).",
    ),
    Setting(
        "USAGE_DAILY_ROLLUP_ENABLED",
        "true",
        "Serve usage reports from the rollup (`false`: scan task_usage; same answers).",
    ),
    Setting(
        "USAGEMETER_TICK_SECONDS",
        "2",
        "How often `usagemeter serve` folds queued usage changes into the rollup, at once"
        " again while a backlog remains (0: never).",
    ),
)


def _flag(value: str) -> bool:
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"not a boolean: {value!r}")


@dataclass(frozen=True)
class Config:
    database_url: str
    data_dir: Path
    host: str
    port: int
    pool_size: int
    batch_max: int
    max_body: int
    body_timeout: float
    statement_timeout: float
    metrics_token: str
    rollup_enabled: bool
    tick_seconds: float

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Config:
        """Read every setting from the environment, falling back to its default."""
        env = os.environ if env is None else env
        v = {s.env: env.get(s.env) or s.default for s in SETTINGS}
        try:
            cfg = cls(
                database_url=v["DATABASE_URL"],
                data_dir=Path(v["USAGEMETER_DATA_DIR"]).expanduser(),
                host=v["USAGEMETER_HOST"],
                port=int(v["USAGEMETER_PORT"]),
                pool_size=int(v["USAGEMETER_POOL_SIZE"]),
                batch_max=int(v["USAGEMETER_BATCH_MAX"]),
                max_body=int(v["USAGEMETER_MAX_BODY"]),
                body_timeout=float(v["USAGEMETER_BODY_TIMEOUT"]),
                statement_timeout=float(v["USAGEMETER_STATEMENT_TIMEOUT"]),
                metrics_token=v["USAGEMETER_METRICS_TOKEN"],
                rollup_enabled=_flag(v["USAGE_DAILY_ROLLUP_ENABLED"]),
                tick_seconds=float(v["USAGEMETER_TICK_SECONDS"]),
            )
        except ValueError as e:
            raise SystemExit(f"invalid setting: {e}") from e
        if min(cfg.pool_size, cfg.batch_max, cfg.max_body) < 1 or cfg.tick_seconds < 0:
            raise SystemExit(
                "invalid setting: USAGEMETER_POOL_SIZE, USAGEMETER_BATCH_MAX and"
                " USAGEMETER_MAX_BODY must be at least 1, USAGEMETER_TICK_SECONDS at least 0"
            )
        if min(cfg.body_timeout, cfg.statement_timeout) <= 0:
            raise SystemExit(
                "invalid setting: USAGEMETER_BODY_TIMEOUT and USAGEMETER_STATEMENT_TIMEOUT"
                " must be above 0"
            )
        return cfg
