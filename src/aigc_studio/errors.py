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
        code: a machine-readable reason for OpenAI's ``code`` field (``"content_policy_violation"``), or None.
        status: the HTTP status the server answers with: 400 unless the problem is better said otherwise
            (404 for an unknown model, 413 for a body too large, 429/503 for an overloaded engine).
    """

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code
        self.status = status

    def __str__(self) -> str:
        return self.message
