"""Token ids → text deltas for streaming, one completion at a time, honouring stop strings.

Decoding the whole completion each time (rather than token by token) keeps multi-token
characters and tokenizer-specific spacing right. Two things are held back until they resolve:
an incomplete UTF-8 character (the decoder shows it as U+FFFD) and a tail that could be the
start of a stop string, so a client never receives text that a stop string later cuts off.
"""

from __future__ import annotations

from collections.abc import Callable


def partial_stop_length(text: str, stops: list[str]) -> int:
    """Length of the longest tail of `text` that is a proper prefix of some stop string."""
    longest = 0
    for stop in stops:
        for k in range(min(len(stop) - 1, len(text)), longest, -1):
            if text.endswith(stop[:k]):
                longest = k
                break
    return longest


class TextStream:
    """The text of one completion, released as deltas that are never taken back."""

    def __init__(self, decode: Callable[[list[int]], str], stop: list[str] | None = None):
        self._decode = decode
        self._stops = [s for s in (stop or []) if s]
        self.ids: list[int] = []
        self.text = ""  # released so far
        self.stopped = False  # a stop string was found; nothing more will be released

    def push(self, token_id: int) -> str:
        """Add one generated token; return the newly released text (may be empty)."""
        if self.stopped:
            return ""
        self.ids.append(token_id)
        full = self._decode(self.ids)
        cut = min((i for i in (full.find(s) for s in self._stops) if i >= 0), default=-1)
        if cut >= 0:
            self.stopped = True
            return self._release(full[:cut])
        if full.endswith("\ufffd"):
            return ""
        return self._release(full[: len(full) - partial_stop_length(full, self._stops)])

    def finish(self) -> str:
        """Release whatever was held back, at the end of generation."""
        if self.stopped:
            return ""
        return self._release(self._decode(self.ids))

    def _release(self, upto: str) -> str:
        if not upto.startswith(self.text) or len(upto) <= len(self.text):
            return ""
        delta, self.text = upto[len(self.text) :], upto
        return delta
