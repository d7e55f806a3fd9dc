"""A signature-check worker process: `python -m node.verify_worker`, started by node/verify_pool.py.

It reads framed chunks from stdin and answers each with one frame on stdout, in order. A chunk
is `marshal` of a list of (public key, signature, signed bytes); the answer holds one byte per
item, 1 for a valid signature. Both ends are the node's own code, so `marshal` (the fastest
codec for a list of bytes tuples, and one that runs no code while loading) is safe here.

The worker imports only this module and node/client/sigcheck.py (libsodium's bindings): a few
MB each. It exits when stdin closes, which is also what happens when the node dies, even by
SIGKILL: the kernel closes the node's end of the pipe.
"""

from __future__ import annotations

import marshal
import os
import signal
import struct
import sys

from node.client.sigcheck import verify_signature

HEADER = struct.Struct("<I")
READY = b"ready"


def read_exactly(fd: int, size: int) -> bytes | None:
    """size bytes from fd, or None when it closes first."""
    parts: list[bytes] = []
    while size:
        part = os.read(fd, size)
        if not part:
            return None
        parts.append(part)
        size -= len(part)
    return b"".join(parts)


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def frame(payload: bytes) -> bytes:
    return HEADER.pack(len(payload)) + payload


def check(items: list[tuple[bytes, bytes, bytes]]) -> bytes:
    return bytes(verify_signature(key, sig, body) for key, sig, body in items)


def serve(in_fd: int, out_fd: int) -> None:
    write_all(out_fd, frame(READY))
    while True:
        header = read_exactly(in_fd, HEADER.size)
        if header is None:
            return
        payload = read_exactly(in_fd, HEADER.unpack(header)[0])
        if payload is None:
            return
        write_all(out_fd, frame(check(marshal.loads(payload))))


if __name__ == "__main__":
    # Ctrl-C in a terminal reaches the whole process group: the node decides when to stop, and
    # its worker goes when the node closes the pipe.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        serve(sys.stdin.fileno(), sys.stdout.fileno())
    except BrokenPipeError:
        pass
