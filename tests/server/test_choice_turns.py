"""When a request's choices (`n`) start (generation.ChoiceTurns), against a model whose slots are counted here
the way the server counts them: a choice is in the model's count from the moment it starts to its end."""

from __future__ import annotations

import asyncio

from xitui.server.api.generation import ChoiceTurns


class Slots:
    """A model of `total` slots; `busy` are in use (by this request's started choices and by others)."""

    def __init__(self, total: int, others: int = 0):
        self.total, self.busy = total, others

    def free(self) -> int:
        return self.total - self.busy


def test_alone_a_request_takes_all_slots_but_one_and_beside_others_its_half():
    alone = Slots(4)
    assert ChoiceTurns(2, alone.free).grant_now(16) == 3
    beside = Slots(4, others=1)
    assert ChoiceTurns(2, beside.free).grant_now(16) == 2
    full = Slots(4, others=4)
    assert ChoiceTurns(2, full.free).grant_now(16) == 2  # its share, whatever the others hold
    assert ChoiceTurns(1, Slots(1).free).grant_now(16) == 1
    assert ChoiceTurns(16).grant_now(16) == 16  # no slot count: all at once (the default)


def test_each_choice_starts_as_one_ends_in_order_and_a_newcomer_finds_a_slot():
    async def main() -> tuple[list[int], int, int]:
        slots = Slots(4)
        turns = ChoiceTurns(2, slots.free)
        order: list[int] = []
        most = 0
        ends: list[asyncio.Event] = [asyncio.Event() for _ in range(8)]

        async def choice(index: int) -> None:
            nonlocal most
            await turns.take()
            turns.seen()
            slots.busy += 1  # the model counts it as it starts
            order.append(index)
            most = max(most, turns.running)
            try:
                await ends[index].wait()
            finally:
                slots.busy -= 1
                turns.give_back()

        tasks = [asyncio.ensure_future(choice(i)) for i in range(8)]
        await asyncio.sleep(0)
        started_alone = len(order)
        slots.busy += 1  # another client's request takes the free slot
        for index in range(8):
            ends[index].set()
            await asyncio.sleep(0.01)
        await asyncio.gather(*tasks)
        return order, started_alone, most

    order, started_alone, most = asyncio.run(main())
    assert order == list(range(8)) and started_alone == 3 and most == 3


def test_a_choice_cancelled_while_it_waits_takes_no_turn_with_it():
    async def main() -> tuple[int, int]:
        turns = ChoiceTurns(1)
        await turns.take()
        turns.seen()
        waiting = [asyncio.ensure_future(turns.take()) for _ in range(2)]
        await asyncio.sleep(0)
        waiting[0].cancel()
        await asyncio.sleep(0)
        turns.give_back()  # the first choice ends: the second waiter (not the cancelled one) goes
        await asyncio.sleep(0)
        assert waiting[0].cancelled() and waiting[1].done()
        turns.seen()
        return turns.running, turns.unseen

    assert asyncio.run(main()) == (1, 0)
