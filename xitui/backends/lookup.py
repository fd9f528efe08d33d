"""Prompt lookup, the proposer of n-gram speculative decoding: the tokens that followed the last time the
sequence's latest n tokens appeared, in its prompt or its own answer (llama.cpp's server and vLLM's `ngram`
method propose them so). The engine decodes them after the sequence's next token in the same batch and
keeps the longest start the model agrees with (backends/llamacpp_batch.py); a rewrite of the prompt's code,
an extraction that quotes it, JSON that repeats its keys are written several tokens a step.

Adaptive, per sequence: a draft the model took whole doubles the next one (up to DRAFT_MAX), one taken in
part is sized to what was taken, and a draft refused from its first token halves it and waits 1, 3, 7...
steps (up to WAIT_MAX) before the next proposal, so free text, where n-grams repeat by chance, pays for
few refused drafts."""

from __future__ import annotations

#: The n-gram lengths looked up, the longest first (two tokens recur by chance in free text: their drafts were
#: refused and cost it 6 % on this machine).
NGRAM_MAX = 4
NGRAM_MIN = 3
#: Most tokens one draft proposes, and the size of the first one.
DRAFT_MAX = 8
DRAFT_FIRST = 4
#: Most steps a sequence waits without proposing after refused drafts.
WAIT_MAX = 32
#: The latest tokens whose n-grams are looked up (a 128k-token prompt indexed whole took ~30 MB and ~1 s of the
#: engine's thread), and the most positions indexed in one step (a long prompt's index is made a part a step).
WINDOW = 8192
INDEX_STEP = 2048
class Lookup:
    """One sequence's tokens (prompt and answer), indexed by their n-grams, and how its drafts fared."""

    def __init__(self, tokens: list[int]):
        self.tokens = list(tokens)
        #: For each n (NGRAM_MIN..NGRAM_MAX): an n-gram -> where its latest occurrence's continuation starts.
        self.seen: list[dict[tuple[int, ...], int]] = [{} for _ in range(NGRAM_MIN, NGRAM_MAX + 1)]
        #: Continuations registered: every n-gram that ends before this position and has a token after it.
        self.indexed = max(0, len(self.tokens) - WINDOW)
        self.size = DRAFT_FIRST
        self.wait = 0
        self.misses = 0
        #: Tokens proposed and accepted over this sequence's answer.
        self.proposed = 0
        self.accepted = 0

    def add(self, token: int) -> None:
        self.tokens.append(token)

    def draft(self, most: int) -> list[int]:
        """Up to `most` tokens that followed the latest earlier occurrence of the longest n-gram the sequence
        ends with; none while it waits after refused drafts."""
        tokens = self.tokens
        end = len(tokens)
        seen = self.seen
        # (the n-grams that end at the last token have no continuation yet)
        for _ in range(min(end - 1 - self.indexed, INDEX_STEP)):
            self.indexed += 1
            at = self.indexed
            for i, n in enumerate(range(NGRAM_MIN, NGRAM_MAX + 1)):
                if at >= n:
                    seen[i][tuple(tokens[at - n:at])] = at
        if self.wait:
            self.wait -= 1
            return []
        most = min(most, self.size)
        if most <= 0:
            return []
        for i in range(NGRAM_MAX - NGRAM_MIN, -1, -1):
            n = NGRAM_MIN + i
            if end < n:
                continue
            start = seen[i].get(tuple(tokens[end - n:]))
            if start is not None:
                draft = tokens[start:start + most]
                # an image's or a sound's cells (negative placeholders) are never a token to decode
                return next((draft[:k] for k, token in enumerate(draft) if token < 0), draft)
        return []

    def verified(self, proposed: int, accepted: int) -> None:
        """How the model met a draft of `proposed` tokens: it agreed with the first `accepted`."""
        self.proposed += proposed
        self.accepted += accepted
        if accepted == proposed:
            self.size = min(DRAFT_MAX, self.size * 2)
            self.misses = 0
        elif accepted:
            self.size = max(1, accepted + 1)
            self.misses = 0
        else:
            self.size = max(1, self.size // 2)
            self.misses += 1
            self.wait = min(WAIT_MAX, 2 ** self.misses - 1)
