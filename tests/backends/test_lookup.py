"""Prompt lookup, the proposer of speculative decoding (backends/lookup.py): what it drafts and how it adapts."""

from __future__ import annotations

from xitui.backends.lookup import DRAFT_FIRST, DRAFT_MAX, INDEX_STEP, WAIT_MAX, WINDOW, Lookup


def test_it_drafts_what_followed_the_latest_earlier_occurrence_of_the_longest_ngram() -> None:
    lookup = Lookup([9, 1, 2, 3, 4, 5, 6, 9, 1, 2, 3, 7, 8, 9, 0, 1, 2, 3])
    # the 4-gram (9, 1, 2, 3) was last followed by 7 8 9 0; the 3-gram (1, 2, 3) also by 7...: the longer wins
    assert lookup.draft(8) == [7, 8, 9, 0][:DRAFT_FIRST]
    # (1, 2, 3) alone: its latest continuation, cut to 2
    assert Lookup([5, 1, 2, 3, 7, 8, 4, 4, 1, 2, 3, 6, 8, 1, 2, 3]).draft(2) == [6, 8]
    assert Lookup([1, 2, 7, 7, 1, 2]).draft(8) == []  # two tokens match by chance too often to draft on


def test_nothing_is_drafted_without_an_earlier_occurrence_or_room() -> None:
    assert Lookup([1, 2, 3, 4]).draft(8) == []
    assert Lookup([1, 2, 1, 2]).draft(0) == []
    assert Lookup([]).draft(8) == [] and Lookup([7]).draft(8) == []


def test_tokens_added_are_looked_up_too() -> None:
    lookup = Lookup([10, 11, 12, 13])
    for token in (10, 11, 12):
        lookup.add(token)
    assert lookup.draft(2) == [13, 10]


def test_a_draft_taken_whole_grows_one_taken_in_part_is_sized_to_it() -> None:
    lookup = Lookup(list(range(40)) * 2)
    lookup.verified(4, 4)
    assert lookup.size == min(DRAFT_MAX, 2 * DRAFT_FIRST)
    lookup.verified(8, 8)
    assert lookup.size == DRAFT_MAX
    lookup.verified(8, 2)
    assert lookup.size == 3 and lookup.wait == 0
    assert (lookup.proposed, lookup.accepted) == (20, 14)


def test_refused_drafts_back_off_so_free_text_pays_for_few() -> None:
    lookup = Lookup([1, 2, 3, 4, 1, 2, 3])
    waits = []
    for _ in range(6):
        lookup.verified(2, 0)
        waits.append(lookup.wait)
    assert waits == [1, 3, 7, 15, min(31, WAIT_MAX), WAIT_MAX] and lookup.size == 1
    assert lookup.draft(8) == []  # waiting: nothing proposed, the wait counts down
    assert lookup.wait == WAIT_MAX - 1
    lookup.wait = 0
    assert lookup.draft(8) == [4]  # (size 1 after the refusals)
    lookup.verified(1, 1)
    assert lookup.misses == 0 and lookup.size == 2


def test_an_images_cells_are_never_drafted() -> None:
    """An image's cells are negative placeholders in the prompt: a draft stops before them (decoded as a token,
    a truncated id failed the whole batch, other clients' requests with it)."""
    image = -(2**255)
    lookup = Lookup([7, 10, 11, 12, 13, image, image, 5, 10, 11, 12])
    assert lookup.draft(8) == [13]
    assert Lookup([7, 10, 11, 12, image, image, 5, 10, 11, 12]).draft(8) == []


def test_a_long_prompt_is_indexed_a_part_a_step_and_only_its_latest_window() -> None:
    prompt = list(range(200_000))
    lookup = Lookup(prompt + [199_990, 199_991, 199_992])
    lookup.draft(8)
    assert sum(len(seen) for seen in lookup.seen) <= INDEX_STEP * len(lookup.seen)
    for _ in range(WINDOW // INDEX_STEP + 1):
        draft = lookup.draft(8)
    assert draft == [199_993, 199_994, 199_995, 199_996][:DRAFT_FIRST]
    assert all(len(seen) <= WINDOW for seen in lookup.seen)  # (the start of the prompt is never indexed)
