# SPDX-License-Identifier: LGPL-2.1-or-later
"""proto: the native protocol's Hello, encoded by hand (proto/shmem.proto).

One protobuf Message per SOCK_SEQPACKET datagram on RUNDIR/broker.sock
(docs/protocol.md section 2). To know that a broker serves, the harness needs
a Hello and the status of its Reply and nothing else, so it writes and reads
those few fields itself: python3-protobuf is not needed.

    reply = proto.hello(sock, "harness")   # OSError while nobody listens
    assert reply.status == proto.STATUS_OK, reply.error
"""

import collections
import socket

PROTOCOL_VERSION = 1  # SHMEM_PROTOCOL_VERSION, proto/msg.h
MSG_MAX = 65536       # SHMEM_MSG_MAX: bytes of one serialized Message
STATUS_OK, STATUS_VERSION = 0, 11

# Field numbers of proto/shmem.proto.
MESSAGE_SERIAL, MESSAGE_HELLO, MESSAGE_UPGRADE, MESSAGE_REPLY = 1, 10, 19, 30
HELLO_VERSION, HELLO_LABEL = 1, 2
REPLY_STATUS, REPLY_ERROR, REPLY_HELLO = 1, 2, 10
HELLO_REPLY_VERSION, HELLO_REPLY_BROKER, HELLO_REPLY_INSTANCE = 1, 2, 3

# Protobuf wire types (groups, 3 and 4, are not in proto3).
VARINT, I64, LEN, I32 = 0, 1, 2, 5

Reply = collections.namedtuple("Reply", "serial status error version broker instance")


def varint(n):
    """@n (0 .. 2^64-1) as a base-128 varint, low group first."""
    if not 0 <= n < 1 << 64:
        raise ValueError(f"{n} does not fit a uint64")
    out = bytearray()
    while True:
        low, n = n & 0x7f, n >> 7
        out.append(low | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field(number, value):
    """One field: an int as a varint, str or bytes length-delimited (a
    sub-message is the bytes of its fields)."""
    if isinstance(value, int):
        return varint(number << 3 | VARINT) + varint(value)
    if isinstance(value, str):
        value = value.encode()
    return varint(number << 3 | LEN) + varint(len(value)) + value


def encode_hello(serial=1, label="", version=PROTOCOL_VERSION):
    """Message{serial, hello{version, label}}; proto3 leaves out an empty label."""
    hello = field(HELLO_VERSION, version) + (field(HELLO_LABEL, label) if label else b"")
    return field(MESSAGE_SERIAL, serial) + field(MESSAGE_HELLO, hello)


def encode_upgrade(serial):
    """Message{serial, upgrade{}}: an empty sub-message is a field of length 0."""
    return field(MESSAGE_SERIAL, serial) + field(MESSAGE_UPGRADE, b"")


def _varint_at(data, pos):
    n = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("truncated or overlong varint")
        b = data[pos]
        n |= (b & 0x7f) << shift
        pos, shift = pos + 1, shift + 7
        if not b & 0x80:
            return n, pos


def fields(data):
    """The fields of one message as [(number, value)] in wire order: ints for
    varint and fixed fields, bytes for length-delimited ones. ValueError if
    @data does not parse."""
    out, pos = [], 0
    while pos < len(data):
        key, pos = _varint_at(data, pos)
        number, kind = key >> 3, key & 7
        if kind == VARINT:
            value, pos = _varint_at(data, pos)
        elif kind in (I64, I32):
            size = 8 if kind == I64 else 4
            value, pos = int.from_bytes(data[pos:pos + size], "little"), pos + size
        elif kind == LEN:
            size, pos = _varint_at(data, pos)
            value, pos = bytes(data[pos:pos + size]), pos + size
        else:
            raise ValueError(f"wire type {kind} of field {number}")
        if number == 0 or pos > len(data):
            raise ValueError(f"truncated field {number}")
        out.append((number, value))
    return out


def _last(pairs, number, default):
    """A scalar's value: the last occurrence wins, as protobuf decodes it."""
    values = [v for n, v in pairs if n == number]
    return values[-1] if values else default


def decode_reply(data):
    """The Reply in the Message @data, with the HelloReply's fields (0 and ""
    where absent, as proto3 defaults). ValueError if @data carries no Reply."""
    msg = fields(data)
    body = _last(msg, MESSAGE_REPLY, None)
    if not isinstance(body, bytes):
        raise ValueError(f"not a Reply: {bytes(data).hex()}")
    reply = fields(body)
    hello = fields(_last(reply, REPLY_HELLO, b""))
    return Reply(serial=_last(msg, MESSAGE_SERIAL, 0),
                 status=_last(reply, REPLY_STATUS, STATUS_OK),
                 error=_last(reply, REPLY_ERROR, b"").decode(errors="replace"),
                 version=_last(hello, HELLO_REPLY_VERSION, 0),
                 broker=_last(hello, HELLO_REPLY_BROKER, b"").decode(errors="replace"),
                 instance=_last(hello, HELLO_REPLY_INSTANCE, 0))


def hello(path, label="harness", timeout=2.0, version=PROTOCOL_VERSION):
    """Says Hello on the broker socket @path; returns the decoded Reply.

    OSError (ENOENT, ECONNREFUSED, a timeout) while no broker listens there,
    ConnectionResetError if it closes without an answer, ValueError if the
    answer is not a Reply to serial 1."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC) as s:
        s.settimeout(timeout)
        s.connect(path)
        s.send(encode_hello(1, label, version))  # one datagram: all of it or an error
        data = s.recv(MSG_MAX)
    if not data:
        raise ConnectionResetError(f"{path}: closed without answering the Hello")
    reply = decode_reply(data)
    if reply.serial != 1:
        raise ValueError(f"a Reply to serial {reply.serial}, not to the Hello's 1")
    return reply
