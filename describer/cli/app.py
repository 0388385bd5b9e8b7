"""The ``headmaps`` Typer app, built from the command modules. Each command module holds plain
functions (their docstrings are the help text) and imports only ``console``, ``options`` and
library code, never another command module; this one registers them, in the order of --help."""

from __future__ import annotations

import typer

from describer.cli import analyze, describe, evaluate, qk, quality, raters, review, store

app = typer.Typer(
    help="What does each attention head do? MAPS analysis of attention-head weights.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command()(analyze.models)
app.command()(analyze.analyze)
app.command()(analyze.score)
app.command("export")(store.export)
app.command("import")(store.import_)
app.command()(store.show)
app.command()(qk.qk)
app.command()(describe.describe)
app.command()(quality.report)
app.command()(review.serve)
app.command()(review.search)
app.command()(review.rate)

db_app = typer.Typer(help="The database: schema version and upgrades.", no_args_is_help=True)
db_app.command("upgrade")(store.db_upgrade)
db_app.command("info")(store.db_info)
app.add_typer(db_app, name="db")

raters_app = typer.Typer(
    help="Who may rate in the web app: tokens, login links, revocation.", no_args_is_help=True
)
raters_app.command("add")(raters.add)
raters_app.command("list")(raters.list_)
raters_app.command("revoke")(raters.revoke)
raters_app.command("link")(raters.link)
app.add_typer(raters_app, name="raters")

evaluate_app = typer.Typer(
    help="Validate the static scores against the model's behaviour (the MAPS paper's experiments).",
    no_args_is_help=True,
)
evaluate_app.command()(evaluate.correlation)
evaluate_app.command()(evaluate.causal)
evaluate_app.command("descriptions")(quality.evaluate_descriptions)
evaluate_app.command("ratings")(quality.evaluate_ratings)
app.add_typer(evaluate_app, name="evaluate")


def main() -> None:  # pragma: no cover
    app()
