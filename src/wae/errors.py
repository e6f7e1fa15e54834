"""Errors that mean "the user asked for something that cannot be done", with a message that
says what was wrong and what to do. The `wae` command prints them (no traceback) and exits 2.
"""

from __future__ import annotations

__all__ = ["WAEError"]


class WAEError(Exception):
    """Base class of the library's user-facing errors."""
