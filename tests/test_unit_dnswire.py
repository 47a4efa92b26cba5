"""DNS messages (mini_engine/network/dnswire.py) and the responder's answers
(resolver.answer): byte by byte against RFC 1035, hostile messages refused.
A leases file in tmp_path; no socket, no network."""

from __future__ import annotations

import ipaddress
import json
import struct
from pathlib import Path

import pytest

from mini_engine.network import dnswire
from mini_engine.network.resolver import Names, answer

pytestmark = [pytest.mark.stage(7), pytest.mark.unit]

SUBNET = ipaddress.IPv4Network("10.89.0.0/24")


def query(name: bytes, qtype: int, ident: int = 0x1234, flags: int = 0x0100) -> bytes:
    return struct.pack("!HHHHHH", ident, flags, 1, 0, 0, 0) + name + struct.pack("!HH", qtype, 1)


@pytest.fixture
def names(tmp_path: Path) -> Names:
    leases = tmp_path / "front.leases.json"
    leases.write_text(json.dumps({
        "10.89.0.2": {"container": "a" * 64, "names": ["alpha", "aaaaaaaaaaaa", "db"]},
        "10.89.0.3": {"container": "b" * 64, "names": ["beta", "bbbbbbbbbbbb", "db"], "dns": ["192.0.2.53"]},
    }))
    return Names(str(leases))


def test_a_query_is_parsed_and_its_name_lowered() -> None:
    q = dnswire.parse_query(query(b"\x03WeB\x05front\x00", dnswire.A))
    assert (q.id, q.name, q.qtype, q.qclass) == (0x1234, "web.front", dnswire.A, dnswire.IN)
    assert q.question == b"\x03WeB\x05front\x00\x00\x01\x00\x01"  # as it came: the answer echoes it


def test_an_answer_byte_by_byte() -> None:
    q = dnswire.parse_query(query(b"\x03web\x00", dnswire.A))
    reply = dnswire.response(q, dnswire.NOERROR, [dnswire.a_record("10.89.0.2")], ttl=60)
    assert reply == (b"\x12\x34"           # the query's id
                     b"\x85\x80"           # QR, AA, RD (copied), RA; NOERROR
                     b"\x00\x01\x00\x01\x00\x00\x00\x00"
                     b"\x03web\x00\x00\x01\x00\x01"
                     b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04\x0a\x59\x00\x02")


@pytest.mark.parametrize("data,why", [
    (b"\x12\x34\x01", "shorter than a header"),
    (struct.pack("!HHHHHH", 1, 0x8000, 1, 0, 0, 0) + b"\x00\x00\x01\x00\x01", "a response, not a query"),
    (struct.pack("!HHHHHH", 1, 0, 2, 0, 0, 0) + b"\x00\x00\x01\x00\x01" * 2, "2 questions"),
    (query(b"\x03web", dnswire.A)[:-4], "a name runs past the end"),
    (query(b"\xc0\x0c", dnswire.A), "a pointer that does not point back"),  # to itself: a loop
    (query(b"\x40" + b"x" * 64 + b"\x00", dnswire.A), "a label type RFC 1035 does not define"),
    (query((b"\x3f" + b"x" * 63) * 4 + b"\x00", dnswire.A), "a name too long"),
    (query(b"\x03web\x00", dnswire.A)[:-2], "the question ends early"),
])
def test_broken_queries_are_refused(data: bytes, why: str) -> None:
    with pytest.raises(dnswire.WireError, match=why):
        dnswire.parse_query(data)


def test_an_unparsable_query_gets_formerr_with_its_id_and_a_response_gets_nothing() -> None:
    data = query(b"\xc0\x0c", dnswire.A, ident=0xBEEF)
    assert dnswire.error(data, dnswire.FORMERR) == b"\xbe\xef\x81\x01" + bytes(8)
    assert dnswire.error(struct.pack("!HHHHHH", 1, 0x8000, 0, 0, 0, 0), dnswire.FORMERR) is None


def test_answers_a_aaaa_ptr_and_none_for_what_is_not_ours(names: Names) -> None:
    def ask(name: bytes, qtype: int) -> tuple[int, int, bytes] | None:
        reply = answer(names, SUBNET, dnswire.parse_query(query(name, qtype)))
        if reply is None:
            return None
        _, flags, _, count, _, _ = struct.unpack_from("!HHHHHH", reply)
        return flags & 0xF, count, reply
    a = ask(b"\x05alpha\x00", dnswire.A)
    assert a is not None and a[:2] == (dnswire.NOERROR, 1) and a[2].endswith(b"\x0a\x59\x00\x02")
    both = ask(b"\x02DB\x00", dnswire.A)  # an alias two containers share: both, in address order
    assert both is not None and both[1] == 2
    second = b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04\x0a\x59\x00\x03"
    assert both[2].endswith(b"\x0a\x59\x00\x02" + second)
    aaaa = ask(b"\x05alpha\x00", dnswire.AAAA)
    assert aaaa is not None and aaaa[:2] == (dnswire.NOERROR, 0)  # no data, not NXDOMAIN
    ptr = ask(b"\x013\x010\x0289\x0210\x07in-addr\x04arpa\x00", dnswire.PTR)
    assert ptr is not None and ptr[:2] == (dnswire.NOERROR, 1) and ptr[2].endswith(b"\x04beta\x00")
    free = ask(b"\x0299\x010\x0289\x0210\x07in-addr\x04arpa\x00", dnswire.PTR)
    assert free is not None and free[:2] == (dnswire.NXDOMAIN, 0)
    assert ask(b"\x07example\x03com\x00", dnswire.A) is None  # forwarded
    assert ask(b"\x011\x010\x010\x03127\x07in-addr\x04arpa\x00", dnswire.PTR) is None  # not our subnet
    assert names.servers_for("10.89.0.3") == ["192.0.2.53"] and names.servers_for("10.89.0.2") == []


def test_names_are_read_again_when_the_leases_file_is_replaced(names: Names, tmp_path: Path) -> None:
    names.refresh()
    assert names.addresses("gamma") == []
    fresh = tmp_path / "new.json"
    fresh.write_text(json.dumps({"10.89.0.9": {"container": "c" * 64, "names": ["gamma"]}}))
    fresh.rename(names.path)  # as the engine writes it: a rename, a new inode
    names.refresh()
    assert names.addresses("gamma") == ["10.89.0.9"] and names.addresses("alpha") == []
