"""The RFC catalogues (fixtures/conformance/): one entry per normative sentence, re-counted from
the RFC text per section when the text is present ($TESTBED_RFC_DIR, docs/rfcs or ../shared/rfcs)."""
from collections import Counter
from pathlib import Path

import pytest

from testbed.conformance.catalogue import CATALOGUES, load, rfc_catalogues, rfc_text_dir
from testbed.conformance.rfc_sentences import letter, normative_sentences, split_sentences

CATALOGUE_FILES = sorted(CATALOGUES.glob("rfc*.yaml"))


@pytest.mark.parametrize("path", CATALOGUE_FILES, ids=lambda p: p.stem)
def test_every_normative_sentence_has_its_entry(path):
    cat = load(path)
    rfcs = rfc_text_dir()
    if rfcs is None or not (rfcs / f"rfc{cat.rfc}.txt").exists():
        pytest.skip(f"the text of RFC {cat.rfc} is not here (set TESTBED_RFC_DIR to a folder with rfc{cat.rfc}.txt)")
    sentences = normative_sentences((rfcs / f"rfc{cat.rfc}.txt").read_text(encoding="utf-8", errors="replace"))
    want = Counter(s.section for s in sentences)
    have = Counter(e.section for e in cat.entries)
    differ = {sec: (want[sec], have[sec]) for sec in set(want) | set(have) if want[sec] != have[sec]}
    assert not differ, f"RFC {cat.rfc}: sections whose normative sentences (text, catalogue) differ: {sorted(differ.items())}"
    by_id = {e.id: e for e in cat.entries}
    for s in sentences:
        e = by_id.get(s.id(cat.rfc))
        assert e is not None, f"{s.id(cat.rfc)} ({s.level}) is not in {path.name}: {s.text}"
        assert (e.level, e.starts) == (s.level, s.starts), f"{e.id} sits on another sentence: {e.starts!r} vs the text's {s.starts!r}"


def test_catalogues_load_and_say_why_a_sentence_is_not_testable():
    cats = rfc_catalogues()
    for cat in cats.values():
        for e in cat.entries:
            assert e.text and e.roles, e
            assert e.cls == "wire" or e.why, e


def test_sentences_split_where_a_reader_would():
    assert split_sentences("The responder MUST reply, e.g. with a notify.  Then it SHOULD wait.") == [
        "The responder MUST reply, e.g. with a notify.", "Then it SHOULD wait."]
    assert [letter(n) for n in (0, 25, 26, 27, 51, 52)] == ["a", "z", "aa", "ab", "az", "ba"]


def test_sections_and_levels_from_a_small_text():
    text = ("1.  Introduction\n\n   Nothing here is required.  The key words \"MUST\" are in RFC 2119.\n\n"
            "2.  Rules\n\n   A node MUST answer.  It SHOULD NOT wait; it MUST NOT drop.  It MAY log.\n\n"
            "2.1.  More\n\n   Support is REQUIRED.\n")
    got = [(s.id(1), s.level) for s in normative_sentences(text)]
    assert got == [("rfc1-2-a", "MUST"), ("rfc1-2-b", "MUST NOT"), ("rfc1-2.1-a", "MUST")]
