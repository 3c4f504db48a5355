"""Signed links to archived files: unguessable, unalterable, safe to put in an IRC line."""

from __future__ import annotations

from urllib.parse import unquote

from bridge.media import MediaLinks

LINKS = MediaLinks("https://bridge.corp.example/", b"a-long-enough-media-secret")
SHA = "ab" * 32


def test_a_link_names_the_record_the_file_and_carries_its_signature() -> None:
    url = LINKS.url(42, SHA, "Q3 report (final).pdf")
    prefix = f"https://bridge.corp.example/media/42/{SHA}/"
    assert url.startswith(prefix)
    signature, name = url.removeprefix(prefix).split("/")
    assert len(signature) == 32 and LINKS.valid(42, SHA, signature)
    assert " " not in url and unquote(name) == "Q3 report (final).pdf"
    assert LINKS.url(42, SHA, "a/../../etc/passwd").endswith("/a%2F..%2F..%2Fetc%2Fpasswd")


def test_a_link_for_another_record_or_file_or_key_does_not_verify() -> None:
    signature = LINKS.signature(42, SHA)
    assert not LINKS.valid(43, SHA, signature)
    assert not LINKS.valid(42, "cd" * 32, signature)
    assert not MediaLinks("https://bridge.corp.example", b"another-secret-entirely").valid(42, SHA, signature)
    assert not LINKS.valid(42, SHA, signature[:-1] + ("0" if signature[-1] != "0" else "1"))
