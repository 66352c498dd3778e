"""Streaming text deltas: never released past a stop string, never split inside a character."""

from __future__ import annotations

from tunery.data.render import ChatTokenizer
from tunery.serve.decoding import TextStream, partial_stop_length


def test_partial_stop_length_by_hand():
    assert partial_stop_length("hello wor", ["world"]) == 3
    assert partial_stop_length("hello", ["lo!", "xyz"]) == 2
    assert partial_stop_length("hello", ["abc"]) == 0
    assert partial_stop_length("ab", ["abc", "b"]) == 2  # a whole stop string is not "partial"


def stream_all(tok: ChatTokenizer, text: str, stop: list[str]) -> tuple[list[str], TextStream]:
    stream = TextStream(tok.decode, stop)
    deltas = []
    for token in tok.encode(text)[0]:
        deltas.append(stream.push(token))
        if stream.stopped:
            break
    deltas.append(stream.finish())
    return [d for d in deltas if d], stream


def test_deltas_concatenate_to_the_decoded_text(tiny_model_dir):
    tok = ChatTokenizer.from_dir(tiny_model_dir)
    text = "The quick brown fox jumps over the lazy dog. café ✓"
    deltas, stream = stream_all(tok, text, [])
    assert "".join(deltas) == tok.decode(tok.encode(text)[0]) == stream.text
    assert all("\ufffd" not in d for d in deltas)  # multi-byte characters arrive whole


def test_a_stop_string_cuts_the_text_and_nothing_after_it_is_released(tiny_model_dir):
    tok = ChatTokenizer.from_dir(tiny_model_dir)
    deltas, stream = stream_all(tok, "Paris is the capital of France.", ["capital"])
    assert "".join(deltas) == "Paris is the " and stream.stopped
    # A text that only starts like the stop string is released in full at the end.
    deltas, stream = stream_all(tok, "the cap", ["capital"])
    assert "".join(deltas) == "the cap" and not stream.stopped
