"""The bounded MIME reader: line endings, charsets, transfer encodings, broken structure, limits."""

from __future__ import annotations

import base64
import time

import pytest

from bouncemilter.classify import classify
from bouncemilter.classify.mime import (
    MAX_NEST,
    MAX_SCAN,
    decode_bytes,
    decode_words,
    html_to_text,
    parse_content_type,
    parse_header_block,
    parse_message,
)

DSN = b"""From: MAILER-DAEMON@mx.example.org
To: bounces@example.com
Subject: Undelivered Mail Returned to Sender
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B"

--B
Content-Type: text/plain

<jack@example.net>: host mx.example.net said: 550 5.1.1 User unknown

--B
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.org

Final-Recipient: rfc822; jack@example.net
Action: failed
Status: 5.1.1
Diagnostic-Code: smtp; 550 5.1.1 User unknown

--B
Content-Type: message/rfc822

From: bounces@example.com
To: jack@example.net
Subject: Hello
Message-ID: <m-1@example.com>

body
--B--
"""


def _shape(raw: bytes) -> list[tuple[str, int]]:
    return [(p.ctype, p.depth) for p in parse_message(raw).parts]


@pytest.mark.parametrize("eol", [b"\r\n", b"\r", b"\n"])
def test_line_endings_give_the_same_structure(eol: bytes) -> None:
    raw = DSN.replace(b"\n", eol)
    msg = parse_message(raw)
    assert _shape(raw) == _shape(DSN)
    assert msg.headers.get("subject") == "Undelivered Mail Returned to Sender"
    assert "\r" not in msg.find("message/delivery-status").text
    result = classify(raw)
    assert [r.recipient for r in result.recipients] == ["jack@example.net"]


def test_mixed_line_endings() -> None:
    raw = DSN.replace(b"\n", b"\r\n", 10)
    assert _shape(raw) == _shape(DSN)


def test_eight_bit_headers_and_unknown_charsets() -> None:
    raw = (
        b"From: J\xfcrgen <j@example.org>\nSubject: Gr\xc3\xbc\xc3\x9fe\nX-Bad: \xff\xfe\x00\n"
        b"Content-Type: text/plain; charset=x-no-such-charset\n\nK\xf6ln \xe2\x82\xac\n"
    )
    msg = parse_message(raw)
    assert msg.headers.get("from") == "J\xfcrgen <j@example.org>"  # Latin-1 fallback per block
    assert "Gr" in msg.headers.get("subject")
    assert msg.parts[0].text.startswith("K")


@pytest.mark.parametrize(
    "charset", ["base64", "rot13", "zlib", "idna", "punycode", "utf-7", "a\x00b", "x" * 500, "ünï", '"', ""]
)
def test_hostile_charset_names_never_raise(charset: str) -> None:
    assert isinstance(decode_bytes(b"caf\xe9 \xff\xfe +AGE-", charset), str)
    raw = f"Content-Type: text/plain; charset={charset}\nSubject: =?{charset}?q?x=FF?=\n\nxn--\xff".encode(
        "utf-8", "surrogateescape"
    )
    msg = parse_message(raw)
    assert isinstance(msg.parts[0].text, str)
    assert isinstance(msg.headers.decoded("subject"), str)


def test_encoded_words() -> None:
    assert decode_words("=?utf-8?b?UmVjaG51bmcgZsO8ciBNw6Ryeg==?=") == "Rechnung für März"
    assert decode_words("=?iso-8859-1?q?f=FCr?= =?iso-8859-1?q?_M=E4rz?=") == "für März"
    assert decode_words("=?utf-8?b?broken?padding?=") == "=?utf-8?b?broken?padding?="
    assert isinstance(decode_words("=?utf-8?b?UmVj?="), str)  # missing padding is added


@pytest.mark.parametrize(
    "body",
    [
        b"RmluYWwtUmVjaXBpZW50OiByZmM4MjI7IGthdGVAZXhhbXBsZS5uZXQKU3RhdHVzOiA1LjEuMQo",  # padding missing
        b"RmluYWwtUmVjaXBpZW50OiByZmM4MjI7IGthdGVAZXhhbXBsZS5uZXQKU3RhdHVzOiA1LjEuMQo=!!junk**",
        b"!!!! not base64 at all ????",
        b"=",
        b"",
    ],
)
def test_broken_base64_parts(body: bytes) -> None:
    raw = b"Content-Type: message/delivery-status\nContent-Transfer-Encoding: base64\n\n" + body
    text = parse_message(raw).parts[0].text
    assert isinstance(text, str)
    if body.startswith(b"RmluYWw"):
        assert "kate@example.net" in text


def test_quoted_printable_with_junk() -> None:
    raw = b"Content-Transfer-Encoding: quoted-printable\nContent-Type: text/plain\n\nEmpf=E4nger =ZZ =\n=3D ok=\n"
    text = parse_message(raw).parts[0].text
    assert "ok" in text


def test_missing_boundary_is_guessed() -> None:
    raw = DSN.replace(b'boundary="B"', b"")
    assert [c for c, _ in _shape(raw)][:2] == ["text/plain", "message/delivery-status"]


def test_wrong_boundary_is_guessed() -> None:
    raw = DSN.replace(b'boundary="B"', b'boundary="not-the-one"')
    assert "message/delivery-status" in [c for c, _ in _shape(raw)]


def test_multipart_without_any_boundary_is_read_as_text() -> None:
    raw = b"Content-Type: multipart/mixed; boundary=zz\n\nno parts here, 550 5.1.1 user unknown\n"
    msg = parse_message(raw)
    assert [p.ctype for p in msg.parts] == ["text/plain"]
    assert "5.1.1" in msg.parts[0].text


def test_unclosed_multipart_and_truncation() -> None:
    for cut in range(0, len(DSN), 7):
        msg = parse_message(DSN[:cut])
        assert msg.parts is not None
        classify(DSN[:cut])


def test_deep_nesting_is_bounded() -> None:
    levels = 5000
    raw = b"".join(b"Content-Type: multipart/mixed; boundary=b%d\n\n--b%d\n" % (i, i) for i in range(levels))
    start = time.perf_counter()
    msg = parse_message(raw)
    assert time.perf_counter() - start < 1.0
    assert len(msg.parts) >= 1
    raw = b"Content-Type: message/rfc822\n\n" * levels + b"Subject: deep\n\ntext"
    msg = parse_message(raw)
    assert max(p.depth for p in msg.parts) <= MAX_NEST


def test_folded_header_over_many_lines_is_linear() -> None:
    raw = b"Subject: start\n" + b" more\n" * 100_000 + b"\nbody"
    start = time.perf_counter()
    headers = parse_message(raw).headers
    assert time.perf_counter() - start < 1.0
    assert headers.get("subject").startswith("start more more")


def test_header_folding_and_case() -> None:
    headers = parse_header_block(b"Content-Type: multipart/report;\n\treport-type=delivery-status\nX-A: 1\nx-a: 2")
    assert headers.get("content-type") == "multipart/report; report-type=delivery-status"
    assert headers.get_all("X-A") == ["1", "2"]
    assert "CONTENT-TYPE" in headers


def test_content_type_params_are_a_private_copy() -> None:
    ctype, params = parse_content_type('Multipart/Report; Boundary="a b"; report-type=delivery-status')
    assert ctype == "multipart/report" and params["boundary"] == "a b"
    params["boundary"] = "changed"
    assert parse_content_type('Multipart/Report; Boundary="a b"; report-type=delivery-status')[1]["boundary"] == "a b"


@pytest.mark.parametrize(
    "html",
    ["<" * 300_000, "<br" * 200_000, "<style" * 100_000, "<head>x" * 100_000, "<script>" + "a" * 500_000],
)
def test_html_reduction_is_linear(html: str) -> None:
    start = time.perf_counter()
    html_to_text(html)
    assert time.perf_counter() - start < 1.0


def test_html_reduction() -> None:
    html = "<html><head><style>p {x}</style></head><body><p>550 5.1.1 &lt;a@example.net&gt;<br>unknown</p></body>"
    assert html_to_text(html).split() == ["550", "5.1.1", "<a@example.net>", "unknown"]


def test_only_max_scan_bytes_are_read() -> None:
    raw = DSN.replace(b"body\n--B--\n", b"body\n" + b"x" * (MAX_SCAN * 2))
    msg = parse_message(raw)
    assert msg.truncated and msg.size == len(raw)
    assert msg.find("message/delivery-status") is not None


def test_non_bytes_input() -> None:
    assert parse_message(DSN.decode()).headers.get("to") == "bounces@example.com"  # type: ignore[arg-type]
    assert parse_message(bytearray(DSN)).find("message/delivery-status") is not None  # type: ignore[arg-type]
    assert parse_message(None).parts is not None  # type: ignore[arg-type]


def test_base64_encoded_attached_message() -> None:
    inner = b"From: a@example.com\nSubject: inner\n\nhello\n"
    raw = (
        b"Content-Type: multipart/mixed; boundary=X\n\n--X\nContent-Type: text/plain\n\nsee attached\n"
        b"--X\nContent-Type: message/rfc822\nContent-Transfer-Encoding: base64\n\n"
        + base64.encodebytes(inner)
        + b"--X--\n"
    )
    headers = parse_message(raw).original_headers()
    assert headers is not None and headers.get("subject") == "inner"


def test_header_names_are_found_in_any_case_however_often_asked() -> None:
    h = parse_header_block(b"X-Mixed-Case: one\nSubject: two\nsubject: three")
    for _ in range(2):  # the second round runs with the lower-case names remembered
        assert h.get("x-mixed-case") == h.get("X-MIXED-CASE") == "one"
        assert h.get_all("subject") == h.get_all("SUBJECT") == ["two", "three"]
        assert "x-mixed-case" in h and "X-Mixed-CASE" in h
        assert "x-absent" not in h and "X-Absent" not in h
        assert h.get("x-absent", "d") == h.get("X-ABSENT", "d") == "d" and h.get_all("x-absent") == []


def test_crlf_to_lf_is_replace_at_every_size() -> None:
    from bouncemilter.classify.mime import SPLIT_JOIN_MIN, crlf_to_lf, normalise_newlines

    pieces = [b"a", b"\r", b"\n", b"\r\n", b"\r\r\n", b"\n\r", b"xyz" * 7]
    for size in (0, 10, SPLIT_JOIN_MIN - 1, SPLIT_JOIN_MIN, 3 * SPLIT_JOIN_MIN):
        for start in range(len(pieces)):
            data = b"".join(pieces[(start + i) % len(pieces)] for i in range(size // 4 + 1))[: size + start]
            assert crlf_to_lf(data) == data.replace(b"\r\n", b"\n")
            assert normalise_newlines(data) == data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
