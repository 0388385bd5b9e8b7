"""The ``headmaps`` command line."""

from describer.cli.app import app, main

__all__ = ["app", "main"]
