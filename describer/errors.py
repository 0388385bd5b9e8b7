"""Errors a user can fix. The CLI prints their message as one line and exits with 2."""


class HeadmapsError(Exception):
    """Bad input or an unmet precondition, described in one actionable sentence."""
