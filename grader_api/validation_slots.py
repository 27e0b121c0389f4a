"""Turns at validating uploads in one API process: a bounded number at once, one per user.

Validation is CPU work, so only a few run at once and the rest wait in the event loop (no
thread, no database connection). Each user holds at most one of those turns: a student's
further uploads wait behind their own, so a burst of slow or invalid files from one account
cannot keep a classmate's upload waiting for more than the validations already running.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class ValidationSlots:
    def __init__(self, slots: int):
        self._slots = asyncio.Semaphore(slots)
        self._own_turn: dict[int, asyncio.Lock] = {}
        self._queued: dict[int, int] = {}   # uploads of each user waiting or validating

    @asynccontextmanager
    async def turn(self, user_id: int) -> AsyncIterator[None]:
        """Hold one validation slot for `user_id`, after that user's earlier uploads."""
        lock = self._own_turn.setdefault(user_id, asyncio.Lock())
        self._queued[user_id] = self._queued.get(user_id, 0) + 1
        try:
            async with lock, self._slots:
                yield
        finally:
            self._queued[user_id] -= 1
            if not self._queued[user_id]:   # forget idle users: the map stays as small as the queue
                del self._queued[user_id], self._own_turn[user_id]
