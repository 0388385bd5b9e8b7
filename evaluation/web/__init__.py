"""The review web app (``headmaps serve``): models, heatmaps, heads, the review queue, search."""

from evaluation.web.app import create_app

__all__ = ["create_app"]
