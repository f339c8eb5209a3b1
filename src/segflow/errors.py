"""Exceptions a user is meant to read.

Every error segflow raises on purpose is a :class:`SegflowError` whose message
is one line that says what is wrong and, where it applies, where (file, line,
column). The CLI prints that line; the web layer turns it into a JSON error.
"""

from __future__ import annotations


class SegflowError(Exception):
    """An error caused by input or state a user can fix."""

    code = "error"


class NotFound(SegflowError):
    code = "not_found"


class InvalidInput(SegflowError):
    code = "invalid_input"


class Conflict(InvalidInput):
    """The request clashes with what exists (a taken name, a second link)."""

    code = "conflict"


class NotAuthenticated(SegflowError):
    """No valid session or token (team mode), or a wrong name or password."""

    code = "unauthenticated"


class Forbidden(SegflowError):
    """Signed in, but the request is refused (a missing CSRF token, say)."""

    code = "forbidden"


class Throttled(SegflowError):
    """Too many failed sign-ins: refused until ``retry_after`` seconds pass."""

    code = "throttled"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ImportFailed(InvalidInput):
    """A whole file was refused; nothing from it was stored."""

    code = "import_failed"

    def __init__(
        self,
        reason: str,
        *,
        file: str | None = None,
        line: int | None = None,
        column: str | None = None,
    ) -> None:
        self.reason = reason
        self.file = file
        self.line = line
        self.column = column
        super().__init__(self._format())

    def _format(self) -> str:
        where = self.file or "input"
        if self.line is not None:
            where += f", line {self.line}"
        if self.column is not None:
            where += f", column {self.column!r}"
        return f"{where}: {self.reason}"


def describe_failure(exc: BaseException) -> str:
    """One line about an unexpected failure that quotes no data.

    Database errors carry their SQL and bound values (which can be a
    person's email); only their kind is shown.
    """
    if isinstance(exc, SegflowError):
        return str(exc)
    orig = getattr(exc, "orig", None)
    if orig is not None:
        state = getattr(getattr(orig, "diag", None), "sqlstate", None)
        return f"{type(exc).__name__} ({type(orig).__name__}{', ' + state if state else ''})"
    return type(exc).__name__
