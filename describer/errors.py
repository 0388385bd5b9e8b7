"""Errors a user can fix. The CLI prints their message as one line and exits with 2; the web
app answers with the status of the error's type (``NotFound`` 404, ``InvalidValue`` 422, any
other ``HeadmapsError`` 400), never of its wording."""


class HeadmapsError(Exception):
    """Bad input or an unmet precondition, described in one actionable sentence."""


class NotFound(HeadmapsError):
    """What was asked for does not exist: a model, head, description, analysis or stored scores."""


class InvalidValue(HeadmapsError):
    """A value outside its vocabulary or range: a rating label, category, relation, fraction."""
