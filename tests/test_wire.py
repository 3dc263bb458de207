"""The daphne fast path's frame encoder against the websockets library's own."""

import pytest
from websockets.frames import OP_TEXT, Frame

from chat.fanout.wire import text_frame


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 70000])
def test_a_text_frame_is_what_websockets_would_send_for_the_same_text(size):
    text = "é" * (size // 2) + "x" * (size % 2)
    expected = Frame(OP_TEXT, text.encode()).serialize(mask=False, extensions=[])
    assert text_frame(text) == expected


def test_one_message_is_encoded_once_for_all_its_devices():
    text = "{\"type\":\"message.new\"}" + "x" * 10
    assert text_frame(text) is text_frame(text)
    other = "".join(["{\"type\":\"message.new\"}", "x" * 10])
    assert text_frame(other) == text_frame(text)
