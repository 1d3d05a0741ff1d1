# SPDX-License-Identifier: LGPL-2.1-or-later
"""proto: the native protocol, encoded by hand (proto/shmem.proto).

One protobuf Message per SOCK_SEQPACKET datagram on RUNDIR/broker.sock
(docs/protocol.md section 2). To know that a broker serves, the harness needs
a Hello and the status of its Reply; the tests of hostile input need requests
a well-behaved client would never send (a name with a NUL byte). So it writes
and reads those few fields itself: python3-protobuf is not needed.

    reply = proto.hello(sock, "harness")   # OSError while nobody listens
    assert reply.status == proto.STATUS_OK, reply.error

    with proto.Session(sock, "me") as s:   # a raw connection, Hello said
        r = s.attach(b"a\0b")             # whatever bytes the name is
        assert r.status == proto.STATUS_ILLEGAL_NAME
"""

import collections
import os
import socket

PROTOCOL_VERSION = 1  # SHMEM_PROTOCOL_VERSION, proto/msg.h
MSG_MAX = 65536       # SHMEM_MSG_MAX: bytes of one serialized Message
STATUS_OK, STATUS_VERSION = 0, 11
(STATUS_UNKNOWN_FAILURE, STATUS_NOMEM, STATUS_CLIENT_MAX, STATUS_ILLEGAL_NAME, STATUS_NO_PERMISSION,
 STATUS_DOES_NOT_EXIST, STATUS_EXISTS, STATUS_BAD_SIZE, STATUS_LIMIT, STATUS_BAD_REQUEST) = range(1, 11)
ATTACH_CREATE, ATTACH_FIND, ATTACH_EXCLUSIVE = 0, 1, 2

# Field numbers of proto/shmem.proto.
MESSAGE_SERIAL, MESSAGE_HELLO, MESSAGE_UPGRADE, MESSAGE_REPLY = 1, 10, 19, 30
MESSAGE_ATTACH, MESSAGE_DETACH, MESSAGE_LIST, MESSAGE_INSPECT, MESSAGE_CREATE = 11, 12, 13, 14, 15
ATTACH_NAME, ATTACH_SIZE, ATTACH_MODE = 1, 2, 3
REPLY_INSPECT, INSPECT_REPLY_REGION = 13, 1
MESSAGE_DESTROY, MESSAGE_WATCH = 16, 17
CREATE_NAME, CREATE_SIZE, CREATE_MAX_PEERS, CREATE_PERSISTENT = 1, 2, 3, 4
LIST_LIMIT, LIST_AFTER, REPLY_LIST, LIST_REPLY_REGIONS, LIST_REPLY_NEXT = 1, 2, 12, 1, 2
MESSAGE_FACTORY, FACTORY_LIMIT, FACTORY_AFTER = 20, 1, 2
REPLY_FACTORY, FACTORY_REPLY_VMS, FACTORY_REPLY_NEXT, FACTORY_REPLY_ALL_VMS = 14, 1, 2, 3
FACTORY_VM_LABEL, FACTORY_VM_PID, FACTORY_VM_CONN = 1, 3, 6
REGION_NAME = 1
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
    return encode_request(serial, MESSAGE_UPGRADE)


def encode_request(serial, body_number, body=b""):
    """Message{serial, <body_number>{body}}: @body the bytes of the request's fields."""
    return field(MESSAGE_SERIAL, serial) + field(body_number, body)


def encode_attach(serial, name, size=0, mode=ATTACH_CREATE):
    """Message{serial, attach{name, size, mode}}; @name str or any bytes."""
    body = field(ATTACH_NAME, name) + (field(ATTACH_SIZE, size) if size else b"") + \
        (field(ATTACH_MODE, mode) if mode else b"")
    return encode_request(serial, MESSAGE_ATTACH, body)


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


def reply_fields(data):
    """The fields of the Reply in the Message @data (its body among them)."""
    return fields(_last(fields(data), MESSAGE_REPLY, b""))


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


class Session:
    """A raw connection to the broker: the test says what is sent, nothing is
    checked for it. Hello is said unless @label is None. Replies come back as
    Reply; events in between are skipped; fds that come with a reply are
    closed (an attachment lives as long as the connection)."""

    def __init__(self, path, label="harness", timeout=5.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.serial = 0
        if label is not None:
            reply = self.request(MESSAGE_HELLO, field(HELLO_VERSION, PROTOCOL_VERSION) +
                                 (field(HELLO_LABEL, label) if label else b""))
            if reply.status != STATUS_OK:
                raise ValueError(f"Hello refused: {reply}")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self.sock.close()

    def send(self, data):
        self.sock.send(data)

    def recv(self):
        """One datagram (its fds closed); b"" once the broker closed the connection."""
        data, fds, _, _ = socket.recv_fds(self.sock, MSG_MAX, 253)
        for fd in fds:
            os.close(fd)
        return data

    def request(self, body_number, body=b""):
        self.serial += 1
        self.send(encode_request(self.serial, body_number, body))
        return self.reply()

    def reply(self):
        """The Reply to the last request (its datagram in self.last); ConnectionResetError
        if the broker closed first."""
        while True:
            data = self.recv()
            if not data:
                raise ConnectionResetError("the broker closed the connection")
            msg = fields(data)
            if _last(msg, MESSAGE_SERIAL, 0) == self.serial and _last(msg, MESSAGE_REPLY, None) is not None:
                self.last = data
                return decode_reply(data)

    def attach(self, name, size=0, mode=ATTACH_CREATE):
        self.serial += 1
        self.send(encode_attach(self.serial, name, size, mode))
        return self.reply()

    def inspect(self, name):
        """The Reply, and the RegionInfo's fields ({number: value}) when there is one."""
        reply = self.request(MESSAGE_INSPECT, field(1, name))
        inspect = _last(reply_fields(self.last), REPLY_INSPECT, b"")
        return reply, dict(fields(_last(fields(inspect), INSPECT_REPLY_REGION, b"")))

    def create(self, name, size=4096, persistent=False):
        body = field(CREATE_NAME, name) + field(CREATE_SIZE, size) + \
            (field(CREATE_PERSISTENT, 1) if persistent else b"")
        return self.request(MESSAGE_CREATE, body)

    def destroy(self, name):
        return self.request(MESSAGE_DESTROY, field(1, name))

    def list(self, limit=None, after=None):
        """One List: the Reply, the regions' fields ({number: value}) in order, ListReply.next.
        None leaves a field out, as a client from before paging does."""
        body = (field(LIST_LIMIT, limit) if limit is not None else b"") + \
            (field(LIST_AFTER, after) if after is not None else b"")
        reply = self.request(MESSAGE_LIST, body)
        page = fields(_last(reply_fields(self.last), REPLY_LIST, b""))
        regions = [dict(fields(v)) for n, v in page if n == LIST_REPLY_REGIONS]
        return reply, regions, _last(page, LIST_REPLY_NEXT, 0)

    def factory(self, limit=None, after=None):
        """One Factory: the Reply, the VMs' fields ({number: value}) in order, FactoryReply.next
        and all_vms. None leaves a field out, as a client from before paging does."""
        body = (field(FACTORY_LIMIT, limit) if limit is not None else b"") + \
            (field(FACTORY_AFTER, after) if after is not None else b"")
        reply = self.request(MESSAGE_FACTORY, body)
        page = fields(_last(reply_fields(self.last), REPLY_FACTORY, b""))
        vms = [dict(fields(v)) for n, v in page if n == FACTORY_REPLY_VMS]
        return reply, vms, _last(page, FACTORY_REPLY_NEXT, 0), bool(_last(page, FACTORY_REPLY_ALL_VMS, 0))

    def closed(self, timeout=3.0):
        """Whether the broker closes the connection within @timeout (data that comes is skipped)."""
        self.sock.settimeout(timeout)
        try:
            while self.recv():
                pass
            return True
        except (TimeoutError, socket.timeout):
            return False
        except ConnectionResetError:
            return True
