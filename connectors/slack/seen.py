"""Which Slack events were already handled, so a redelivery is acknowledged without a second relay."""

from __future__ import annotations

from collections import OrderedDict

from bridge.connector import StateStore

# Slack gives up redelivering an event within minutes; a day is ample.
REDELIVERY_MEMORY = 24 * 3600.0


class SeenEvents:
    """Recent event ids in memory; durably only those whose acknowledgement may not have arrived.

    Slack redelivers an event until it is acknowledged. Within one run the memory
    answers. Across a restart only events whose ack could not be sent (socket gone,
    HTTP caller gone) can come back, so only those cost a write to the state store;
    everything that reached the archive is also deduplicated there by native id.
    """

    def __init__(self, state: StateStore, capacity: int = 10_000) -> None:
        self._state = state
        self._capacity = capacity
        self._recent: OrderedDict[str, None] = OrderedDict()

    async def seen(self, event_id: str, *, redelivered: bool) -> bool:
        if event_id in self._recent:
            self._recent.move_to_end(event_id)
            return True
        if redelivered and await self._state.get(_key(event_id)) is not None:
            self._remember(event_id)
            return True
        return False

    async def done(self, event_id: str, *, acknowledged: bool) -> None:
        self._remember(event_id)
        if not acknowledged:
            await self._state.put(_key(event_id), "1", REDELIVERY_MEMORY)

    def _remember(self, event_id: str) -> None:
        self._recent[event_id] = None
        self._recent.move_to_end(event_id)
        while len(self._recent) > self._capacity:
            self._recent.popitem(last=False)


def _key(event_id: str) -> str:
    return f"event:{event_id}"
