"""Errors that mean "the user asked for something that cannot be done", with a message that
says what was wrong and what to do. The `wae` command prints them (no traceback) and exits 2.
"""

from __future__ import annotations

__all__ = ["WAEError", "first_line"]


class WAEError(Exception):
    """Base class of the library's user-facing errors."""


def first_line(e: BaseException, *, with_type: bool = False) -> str:
    """The first non-blank line of an exception's message (at most 200 characters), for a
    one-paragraph error or a table cell; prefixed by the exception's type with `with_type`."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    text = lines[0][:200] if lines else type(e).__name__
    return f"{type(e).__name__}: {text}" if with_type and lines else text
