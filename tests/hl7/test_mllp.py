import asyncio

import pytest

from broker.hl7.mllp import MessageTooLarge, MllpFramingError, MllpReader, frame


def _read_all(chunks: list[bytes], max_bytes: int = 1024) -> list:
    async def run():
        reader = asyncio.StreamReader()
        for chunk in chunks:
            reader.feed_data(chunk)
        reader.feed_eof()
        mllp = MllpReader(reader, max_bytes)
        out = []
        while True:
            try:
                item = await mllp.read_frame()
            except (MessageTooLarge, MllpFramingError, asyncio.IncompleteReadError) as exc:
                out.append(type(exc).__name__)
                if not isinstance(exc, MessageTooLarge):
                    return out
                continue
            if item is None:
                return out
            out.append(item)
    return asyncio.run(run())


def test_two_messages_in_one_packet():
    assert _read_all([frame(b"MSH|1") + frame(b"MSH|2")]) == [b"MSH|1", b"MSH|2"]


def test_one_message_split_byte_by_byte():
    data = frame(b"MSH|split")
    assert _read_all([data[i:i + 1] for i in range(len(data))]) == [b"MSH|split"]


def test_end_block_split_between_packets():
    data = frame(b"MSH|x")
    assert _read_all([data[:-1], data[-1:]]) == [b"MSH|x"]


def test_line_noise_between_frames_is_tolerated():
    assert _read_all([b"\r\n" + frame(b"MSH|1") + b"\n" + frame(b"MSH|2")]) == [b"MSH|1", b"MSH|2"]


def test_garbage_before_a_start_block_is_skipped():
    assert _read_all([b"GARBAGE\x00\xff" + frame(b"MSH|1"), b"junk", frame(b"MSH|2")]) == [
        b"MSH|1", b"MSH|2"]


def test_skipped_garbage_is_counted_for_the_log():
    async def run():
        reader = asyncio.StreamReader()
        reader.feed_data(b"GARBAGE" + frame(b"MSH|1"))
        reader.feed_eof()
        mllp = MllpReader(reader, 1024)
        return await mllp.read_frame(), mllp.skipped_bytes
    assert asyncio.run(run()) == (b"MSH|1", 7)


def test_data_without_any_start_block_is_a_framing_error():
    assert _read_all([b"GET / HTTP/1.1\r\n\r\n"]) == ["MllpFramingError"]


def test_a_long_stream_without_start_block_is_refused_without_waiting_for_its_end():
    async def run():
        reader = asyncio.StreamReader()
        reader.feed_data(b"x" * 5000)  # no end of stream: the reader must not wait for one
        with pytest.raises(MllpFramingError, match="without a start block"):
            await asyncio.wait_for(MllpReader(reader, 1024).read_frame(), 5)
    asyncio.run(run())


def test_a_silent_peer_after_garbage_is_refused_after_the_grace_period():
    async def run():
        reader = asyncio.StreamReader()
        reader.feed_data(b"GET / HTTP/1.1\r\n")  # an HTTP client waits for our answer
        with pytest.raises(MllpFramingError):
            await asyncio.wait_for(MllpReader(reader, 1024, junk_grace_seconds=0.05).read_frame(), 5)
    asyncio.run(run())


def test_connection_closed_mid_message():
    assert _read_all([b"\x0bMSH|partial"]) == ["IncompleteReadError"]


def test_oversized_message_is_reported_and_the_stream_goes_on():
    big = frame(b"MSH|" + b"x" * 5000)
    assert _read_all([big[:3000], big[3000:] + frame(b"MSH|after")], max_bytes=1024) == [
        "MessageTooLarge", b"MSH|after"]


def test_oversized_keeps_the_head_for_the_ack():
    async def run():
        reader = asyncio.StreamReader()
        reader.feed_data(frame(b"MSH|^~\\&|A|B|C|D|x||ORM^O01|C9|P|2.3.1\r" + b"x" * 4000))
        reader.feed_eof()
        with pytest.raises(MessageTooLarge) as err:
            await MllpReader(reader, 1024).read_frame()
        return err.value.head
    assert asyncio.run(run()).startswith(b"MSH|^~\\&|A|B|C|D|x||ORM^O01|C9")
