"""The guest's failure type: `kind` tells the parent which limit or rule was hit."""

from __future__ import annotations


class GuestError(Exception):
    """kind: 'rejected' (student-facing message), 'memory', 'internal'."""

    def __init__(self, message: str, kind: str = "rejected"):
        super().__init__(message)
        self.kind = kind
