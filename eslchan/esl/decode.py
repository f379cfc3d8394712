"""``eslchan decode FILE``: a raw ESL byte stream in, one JSON object per frame out.

Operators read traces with it (a ``.recv`` capture, a tcpdump payload). Each line is
``{"content_type", "headers", "body"}``, and for event frames also ``"event"``: the decoded
event headers with its body under ``_body``. ``-`` reads standard input.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from typing import IO, Any

from eslchan.esl.message import Frame
from eslchan.esl.parser import FrameParser, ProtocolError, decode_event

CHUNK = 1 << 16


def frame_record(frame: Frame) -> dict[str, Any]:
    """The JSON-able form of one frame."""
    record: dict[str, Any] = {
        "content_type": frame.content_type,
        "headers": frame.headers,
        "body": frame.body,
    }
    if frame.is_event:
        try:
            record["event"] = decode_event(frame)
        except ProtocolError as exc:
            record["event_error"] = str(exc)
    return record


def iter_frames(stream: IO[bytes]) -> Iterator[Frame]:
    """Frames of a byte stream; raises ProtocolError on garbage or a truncated last frame."""
    parser = FrameParser()
    while True:
        chunk = stream.read(CHUNK)
        if not chunk:
            break
        yield from parser.feed(chunk)
    if parser.incomplete:
        raise ProtocolError(f"stream ends inside a frame ({parser.buffered} bytes left over)")


def run(path: str, out: IO[str] | None = None, err: IO[str] | None = None) -> int:
    """Decode ``path`` (``-`` for stdin) to ``out``; 0 on success, 1 on a bad stream or file."""
    out = sys.stdout if out is None else out  # looked up now: callers may redirect sys.stdout
    err = sys.stderr if err is None else err
    try:
        stream = sys.stdin.buffer if path == "-" else open(path, "rb")  # noqa: SIM115
    except OSError as exc:
        print(f"eslchan decode: {exc}", file=err)
        return 1
    count = 0
    try:
        for frame in iter_frames(stream):
            out.write(json.dumps(frame_record(frame), ensure_ascii=False) + "\n")
            count += 1
    except ProtocolError as exc:
        print(f"eslchan decode: {path}: after {count} frames: {exc}", file=err)
        return 1
    except BrokenPipeError:  # `eslchan decode x | head`
        return 0
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="eslchan decode", description="print the frames of a raw ESL byte stream as JSON lines"
    )
    parser.add_argument("file", help="a raw ESL stream such as a .recv capture, or - for stdin")
    args = parser.parse_args(argv)
    return run(args.file)


decode_main = main

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
