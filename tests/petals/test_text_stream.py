"""Streamed text for the petals engine (serving.petals.text) and the swarm file's checks: pure, no swarm."""

from __future__ import annotations

import json

import pytest

from serving.petals.launch import plan_document
from serving.petals.swarm import SwarmError, SwarmInfo
from serving.petals.text import IncrementalDetokenizer, StopScanner


def _bytes_decode(ids):
    """A byte-level tokenizer: each id is one byte (an incomplete character decodes as U+FFFD)."""
    return bytes(ids).decode("utf-8", errors="replace")


def _stream(text: str, stops, piece: int = 1) -> tuple[str, bool]:
    scanner, out = StopScanner(stops), []
    for i in range(0, len(text), piece):
        emitted, stopped = scanner.push(text[i:i + piece])
        out.append(emitted)
        if stopped:
            return "".join(out), True
    return "".join(out) + scanner.flush(), False


def test_multibyte_characters_are_never_split():
    text = "aé東🙂 z"
    detok = IncrementalDetokenizer(_bytes_decode)
    pieces = [detok.push(b) for b in text.encode()]
    assert "".join(pieces) + detok.flush() == text
    assert all("\ufffd" not in p for p in pieces)
    assert pieces[:2] == ["a", ""] and pieces[2] == "é"


def test_the_prompt_context_keeps_a_leading_space():
    # a SentencePiece-like decode drops the first piece's leading space; the prompt's context keeps it
    vocab = {1: "▁The", 2: "▁fox", 3: "▁ran"}

    def decode(ids):
        return "".join(vocab[i] for i in ids).replace("▁", " ").lstrip(" ")
    detok = IncrementalDetokenizer(decode, context=[1, 2])
    assert detok.push(3) == " ran"
    assert IncrementalDetokenizer(decode).push(3) == "ran"


@pytest.mark.parametrize("piece", [1, 2, 5])
def test_stop_strings_cut_at_the_first_one_across_pieces(piece):
    assert _stream("hello END world", ["END"], piece) == ("hello ", True)
    assert _stream("one\n\ntwo", ["zzz", "\n\n"], piece) == ("one", True)
    # a stop string's prefix that never completes comes out in the end
    assert _stream("hello EN", ["END"], piece) == ("hello EN", False)
    assert _stream("abc", [], piece) == ("abc", False)


def test_stop_scanner_holds_back_only_a_possible_stop():
    scanner = StopScanner(["</s>", "STOP"])
    assert scanner.push("text <") == ("text ", False)
    assert scanner.push("b>") == ("<b>", False)
    assert scanner.push(" ST") == (" ", False)
    assert scanner.push("OP and more") == ("", True)
    assert scanner.push("later") == ("", True) and scanner.flush() == ""


def test_swarm_file_round_trip_and_errors_name_the_field(tmp_path):
    info = SwarmInfo("/m", "tiny", "prefix", ("/ip4/127.0.0.1/tcp/1/p2p/Qm1",), {"s0": "Qm1", "s1": "Qm2"})
    info.save(tmp_path / "swarm.json")
    assert SwarmInfo.load(tmp_path / "swarm.json") == info
    bad = info.to_dict() | {"peers": {"s0": 3}}
    with pytest.raises(SwarmError, match="peers"):
        SwarmInfo.from_dict(bad)
    with pytest.raises(SwarmError, match="max_length"):
        SwarmInfo.from_dict(info.to_dict() | {"max_length": 0})
    with pytest.raises(SwarmError, match="initial_peers"):
        SwarmInfo.from_dict(info.to_dict() | {"initial_peers": []})
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(SwarmError, match="not JSON"):
        SwarmInfo.load(tmp_path / "broken.json")
    with pytest.raises(SwarmError, match="missing.json"):
        SwarmInfo.load(tmp_path / "missing.json")


def test_plan_document_is_found_in_the_services_answers():
    doc = {"placement": [], "chains": [{"servers": ["s0"], "blocks": [4], "service_time_s": 1.0, "capacity": 1}]}
    assert plan_document(doc) is doc
    assert plan_document({"plan": {"id": 3, "document": doc}, "adoption": {}}) is doc
    with pytest.raises(SwarmError, match="no chains"):
        plan_document({"placement": [], "chains": []})
    with pytest.raises(SwarmError, match="placement"):
        plan_document(json.loads('{"plan": null}'))
