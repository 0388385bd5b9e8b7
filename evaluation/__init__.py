"""Experiments on heads (correlation, causal), description scoring, agreement, search, the review web app."""
