"""The one error type that user-facing entry points turn into a clear one-line message.

Library code raises :class:`AigcError` (a ``ValueError``) for anything the *user* can fix: a wrong path,
an unknown column, empty data, a bad sampling value. The message names the problem and the fix. The CLI
prints it as ``error: <message>`` and exits non-zero; the server maps it to a 4xx OpenAI-style body.
Programming errors (bugs) stay ordinary exceptions and keep their tracebacks.
"""

from __future__ import annotations


class AigcError(ValueError):
    """A problem with the user's input, reported as one line that says what is wrong and how to fix it.

    Args:
        message: the one-line explanation, e.g. ``"column 'foo' not found in data.csv; columns are: mr, ref"``.
        param: the name of the offending parameter or flag when there is one (``"top_p"``), so API layers
            can fill OpenAI's ``param`` field.
    """

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param

    def __str__(self) -> str:
        return self.message
