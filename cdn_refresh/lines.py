"""Input lines read from a binary stream in bounded memory, however long a line is.

Lines split on ``\\n`` only, and a ``\\r\\n`` ending is stripped: text mode would also end a line
at a lone ``\\r``, turning one line into two paths; here a stray ``\\r`` stays in its line and
validation rejects it, with the right line number. Bytes that are not UTF-8 survive as
surrogates (``surrogateescape``) and are rejected the same way.

A line is read at most :data:`MAX_LINE_BYTES` (plus its ending) at a time. A longer one is
yielded as an :class:`~cdn_refresh.paths.OverlongInput`: its start and its length, the rest read
in pieces and dropped, so that a 100 MB line costs no more memory than a short one, still
counts as one line, and is refused as too long.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterator
from typing import IO

from cdn_refresh.paths import MAX_RAW_LENGTH, OverlongInput

__all__ = ["MAX_LINE_BYTES", "read_lines"]

# A UTF-8 character takes at most 4 bytes (a surrogate-escaped byte, 1), so a line of more
# bytes than this has more than MAX_RAW_LENGTH characters, which normalize_path refuses
# without parsing: not reading the rest of such a line changes no outcome.
MAX_LINE_BYTES = 4 * MAX_RAW_LENGTH
# Room for the line and its "\r\n": a read that fills it without a "\n" is an over-long line.
_READ_LIMIT = MAX_LINE_BYTES + 2
# The rest of an over-long line is read (to count it) in pieces of this size.
_SKIP_BYTES = 64 * 1024


def read_lines(binary: IO[bytes]) -> Iterator[str]:
    """The lines of ``binary``, decoded; an over-long one as an OverlongInput."""
    while piece := binary.readline(_READ_LIMIT):
        # readline returns less than the limit without a "\n" only at the end of the stream.
        if len(piece) < _READ_LIMIT or piece.endswith(b"\n"):
            if piece.endswith(b"\r\n"):
                piece = piece[:-2]
            elif piece.endswith(b"\n"):
                piece = piece[:-1]
            yield piece.decode("utf-8", errors="surrogateescape")
        else:
            yield _overlong(binary, piece)


def _overlong(binary: IO[bytes], start: bytes) -> OverlongInput:
    """The over-long line that begins with ``start``, its rest read to its end and dropped."""
    # Counted with an incremental decoder, so that the length is what len() of the whole
    # decoded line would be, a character cut between two pieces counted once.
    decoder = codecs.getincrementaldecoder("utf-8")(errors="surrogateescape")
    length = len(decoder.decode(start))
    last = start
    while not last.endswith(b"\n"):
        piece = binary.readline(_SKIP_BYTES)
        if not piece:
            break
        length += len(decoder.decode(piece))
        # Keep a byte of the previous piece: its "\r" and this "\n" end the line together.
        last = last[-1:] + piece
    length += len(decoder.decode(b"", final=True))
    if last.endswith(b"\r\n"):
        length -= 2
    elif last.endswith(b"\n"):
        length -= 1
    # Decoded on its own, a character cut at the end of ``start`` becomes surrogates: the
    # text is never shorter than MAX_RAW_LENGTH + 1 characters, which OverlongInput requires.
    return OverlongInput(start.decode("utf-8", errors="surrogateescape"), length)
