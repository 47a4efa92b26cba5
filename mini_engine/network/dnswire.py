"""DNS on the wire: the few parts of a message a container's names need.

Chapter 07 reads this module. Specification: RFC 1035 (sections 4.1, the
message; 3.3.12, PTR; 3.5, in-addr.arpa), RFC 3596 (AAAA), RFC 2308 (a
name without data of the asked type). Man pages: resolver(3), resolv.conf(5).

A DNS message is a 12-byte header, then sections: the question (a name
and a type), the answers, the authorities, the additional records. A name
is a run of labels, each a length byte and that many bytes, ending with a
zero byte: ``web`` is ``\\x03web\\x00``. Anywhere a name may appear, two
bytes whose top two bits are set point back to a name earlier in the
message (compression): an answer points at the question's name with
``\\xc0\\x0c``, offset 12, where the question starts.

Only what the responder (``resolver.py``) answers itself is parsed and
built here: one question, A and PTR answers. Everything else it forwards
to the host's resolvers as the bytes it received.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Sequence
from dataclasses import dataclass

HEADER = struct.Struct("!HHHHHH")  # id, flags, qdcount, ancount, nscount, arcount
QUESTION_TAIL = struct.Struct("!HH")  # qtype, qclass
ANSWER = struct.Struct("!HHHIH")  # name (a pointer), type, class, ttl, rdlength

# Types and the class (RFC 1035 3.2.2, 3.2.4; RFC 3596 2.1).
A, PTR, AAAA = 1, 12, 28
IN = 1

# The flags word: QR (a response), the opcode, AA (we are the authority),
# TC (truncated), RD (recursion desired), RA (recursion available), RCODE.
QR, AA, TC, RD, RA = 0x8000, 0x0400, 0x0200, 0x0100, 0x0080
OPCODE_SHIFT, OPCODE_MASK, QUERY = 11, 0xF, 0
NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP = 0, 1, 2, 3, 4

POINTER = 0xC0
MAX_NAME = 255  # octets of a whole name, its length bytes counted (RFC 1035 2.3.4)


class WireError(ValueError):
    """A message that is not what RFC 1035 says a query is."""


@dataclass(frozen=True)
class Query:
    id: int
    flags: int
    name: str          # lower case, no final dot: "web", "2.0.89.10.in-addr.arpa"
    qtype: int
    qclass: int
    question: bytes    # the question section as it came, echoed in the answer


# [book:dns-parse]
def parse_query(data: bytes) -> Query:
    """The header and the one question of a query; WireError for anything else."""
    if len(data) < HEADER.size:
        raise WireError("shorter than a header")
    ident, flags, qdcount, _, _, _ = HEADER.unpack_from(data)
    if flags & QR:
        raise WireError("a response, not a query")
    if qdcount != 1:
        # RFC 1035 allows more, but no resolver sends more than one.
        raise WireError(f"{qdcount} questions")
    name, end = read_name(data, HEADER.size)
    if end + QUESTION_TAIL.size > len(data):
        raise WireError("the question ends early")
    qtype, qclass = QUESTION_TAIL.unpack_from(data, end)
    end += QUESTION_TAIL.size
    return Query(ident, flags, name.lower(), qtype, qclass, data[HEADER.size:end])


def read_name(data: bytes, offset: int) -> tuple[str, int]:
    """The name at ``offset``, and the offset just past it (past the pointer, if it has one)."""
    labels: list[str] = []
    end, jumps, size = -1, 0, 1
    while True:
        if offset >= len(data):
            raise WireError("a name runs past the end")
        length = data[offset]
        if length & POINTER == POINTER:
            # A pointer: the name goes on at an earlier offset. Each jump must go
            # back, or a message could point at itself and loop forever.
            if offset + 1 >= len(data):
                raise WireError("a pointer runs past the end")
            target = (length & ~POINTER) << 8 | data[offset + 1]
            if target >= offset or jumps > 32:
                raise WireError("a pointer that does not point back")
            if end < 0:
                end = offset + 2
            offset, jumps = target, jumps + 1
            continue
        if length & POINTER:
            raise WireError("a label type RFC 1035 does not define")
        offset += 1
        if length == 0:
            return ".".join(labels), end if end >= 0 else offset
        size += length + 1
        if size > MAX_NAME or offset + length > len(data):
            raise WireError("a name too long")
        labels.append(data[offset:offset + length].decode("ascii", "replace"))
        offset += length
# [/book:dns-parse]


def encode_name(name: str) -> bytes:
    """``web.front`` as ``\\x03web\\x05front\\x00``."""
    out = b""
    for label in name.strip(".").split("."):
        raw = label.encode("idna") if label else b""
        if not 0 < len(raw) < 64:
            raise WireError(f"label {label!r} of {name!r}: 1 to 63 octets")
        out += bytes([len(raw)]) + raw
    return out + b"\x00"


# [book:dns-answer]
def response(query: Query, rcode: int, answers: Sequence[tuple[int, bytes]] = (), ttl: int = 60,
             authoritative: bool = True) -> bytes:
    """The answer to ``query``: its id and question, ``rcode``, and one record per
    (type, rdata) in ``answers``, each named by a pointer to the question's name."""
    opcode = (query.flags >> OPCODE_SHIFT) & OPCODE_MASK
    flags = QR | opcode << OPCODE_SHIFT | (query.flags & RD) | RA | rcode
    if authoritative:
        flags |= AA  # the names of the network's containers are ours alone
    out = HEADER.pack(query.id, flags, 1, len(answers), 0, 0) + query.question
    for rtype, rdata in answers:
        out += ANSWER.pack(POINTER << 8 | HEADER.size, rtype, IN, ttl, len(rdata)) + rdata
    return out


def a_record(address: str) -> tuple[int, bytes]:
    return A, ipaddress.IPv4Address(address).packed


def ptr_record(name: str) -> tuple[int, bytes]:
    return PTR, encode_name(name)
# [/book:dns-answer]


def reverse_address(name: str) -> str | None:
    """``2.0.89.10.in-addr.arpa`` -> ``10.89.0.2`` (RFC 1035 3.5); None for any other name."""
    labels = name.split(".")
    if labels[-2:] != ["in-addr", "arpa"] or len(labels) != 6:
        return None
    try:
        return str(ipaddress.IPv4Address(".".join(reversed(labels[:4]))))
    except ValueError:
        return None


def error(data: bytes, rcode: int) -> bytes | None:
    """An answer with ``rcode`` and no question to a message too broken to parse,
    if it has an id at all: the resolver then stops waiting (RFC 1035 4.1.1)."""
    if len(data) < HEADER.size or data[2] & 0x80:  # no header, or a response: say nothing
        return None
    ident, flags = struct.unpack_from("!HH", data)
    return HEADER.pack(ident, QR | (flags & (OPCODE_MASK << OPCODE_SHIFT | RD)) | rcode, 0, 0, 0, 0)
