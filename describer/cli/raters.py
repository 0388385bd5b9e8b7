"""``headmaps raters add|list|revoke|link``: who may rate in the web app. Once a rater exists,
every rating in the web app and API needs a signed-in rater (token or login link)."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from describer.cli.console import err, out, user_errors
from describer.cli.options import DbOpt
from store import open_store

UrlOpt = Annotated[
    str,
    typer.Option("--url", help="The web app's address, for the printed login link (as `serve` binds it)."),
]
DEFAULT_URL = "http://127.0.0.1:8000"


def _link(url: str, code: str) -> str:
    return f"{url.rstrip('/')}/login?code={code}"


def add(
    name: Annotated[str, typer.Argument(help="The rater's name, as ratings will show it.")],
    url: UrlOpt = DEFAULT_URL,
    db: DbOpt = None,
) -> None:
    """Add a rater. Prints a one-time login link (valid 7 days) and, as the last line of
    stdout, the rater's secret token (for the login page or `Authorization: Bearer TOKEN`).
    Only its hash is stored: it cannot be shown again (revoke and add anew if lost)."""
    with user_errors(), open_store(db) as store:
        new = store.add_rater(name)
        err.print(
            f"rater {escape(new.rater.name)} added; one-time login link (7 days): "
            f"{escape(_link(url, new.login_code))}",
            highlight=False,
            soft_wrap=True,
        )
        err.print("token (shown once; keep it secret):", highlight=False)
        print(new.token, flush=True)


def link(
    name: Annotated[str, typer.Argument(help="An active rater's name.")],
    url: UrlOpt = DEFAULT_URL,
    db: DbOpt = None,
) -> None:
    """Print a new one-time login link for a rater (the previous link stops working)."""
    with user_errors(), open_store(db) as store:
        code = store.new_login_code(name)
        print(_link(url, code), flush=True)


def list_(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    db: DbOpt = None,
) -> None:
    """List the raters: name, since when, revoked or not, ratings stored."""
    with user_errors(), open_store(db) as store:
        raters = store.list_raters()
    if as_json:
        print(json.dumps([r.model_dump(mode="json") for r in raters], indent=2))
        return
    if not raters:
        out.print("no raters: the web app runs in single-user mode on loopback (raters add NAME)")
        return
    table = Table("rater", "added (UTC)", "status", "ratings")
    for r in raters:
        status = "active" if r.active else f"revoked {r.revoked_at:%Y-%m-%d %H:%M}"
        table.add_row(escape(r.name), f"{r.created_at:%Y-%m-%d %H:%M}", status, str(r.ratings))
    out.print(table)


def revoke(
    name: Annotated[str, typer.Argument(help="The rater to revoke.")],
    db: DbOpt = None,
) -> None:
    """Revoke a rater: their token, login link and signed-in sessions stop working at once.
    Their ratings stay, and the name cannot be given to someone else."""
    with user_errors(), open_store(db) as store:
        rater = store.revoke_rater(name)
        out.print(
            f"rater {escape(rater.name)} revoked; their {rater.ratings} ratings are kept", highlight=False
        )
