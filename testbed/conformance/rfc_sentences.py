"""The normative sentences of an RFC, per section, from its plain-text form (www.rfc-editor.org).

A normative sentence holds one of the BCP 14 key words (RFC 2119 section 1-6, RFC 8174): MUST,
MUST NOT, SHALL, SHALL NOT, REQUIRED, SHOULD, SHOULD NOT, RECOMMENDED, NOT RECOMMENDED, in
capitals. MAY and OPTIONAL grant a freedom, not an obligation, and are not counted. A sentence's
level is its strongest key word (MUST before SHOULD). The boilerplate that defines the key words
(a sentence naming RFC 2119 or BCP 14) is not a requirement and is left out.

The catalogue (fixtures/conformance/rfcNNNN.yaml) has one entry per normative sentence, numbered
a, b, ... within its section in the order of the text: `rfc7296-2.1-c` is the third normative
sentence of RFC 7296 section 2.1. tests/test_conformance_catalogue.py re-counts them from the text.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

_PAGE_FOOTER = re.compile(r"^\S.*\[Page \d+\]\s*$")
_PAGE_HEADER = re.compile(r"^RFC \d+\s.*\s(19|20)\d\d\s*$")
_HEADING = re.compile(r"^(?:Appendix )?((?:\d+|[A-Z])(?:\.\d+)*)\.?\s{1,3}(\S.*)$")
_KEYWORD = re.compile(r"\b(MUST NOT|MUST|SHALL NOT|SHALL|REQUIRED|SHOULD NOT|SHOULD|NOT RECOMMENDED|RECOMMENDED)\b")
_BOILERPLATE = re.compile(r"RFC\s*2119|BCP\s*14|RFC\s*8174")
# a sentence ends at . ? ! (optionally closed by a quote or bracket) followed by whitespace and a
# capital, a digit, a quote or an opening bracket; abbreviations that end in a period do not end one
_END = re.compile(r"(?<=[.?!])[\"')\]]?\s+(?=[A-Z0-9\"'(\[])")
_ABBREV = re.compile(r"(?:\b(?:e\.g|i\.e|etc|et al|cf|vs|Sec|Section|Ref|No|Fig|approx)\.|\b[A-Z]\.)$")

LEVEL_OF = {"MUST": "MUST", "MUST NOT": "MUST NOT", "SHALL": "MUST", "SHALL NOT": "MUST NOT", "REQUIRED": "MUST",
            "SHOULD": "SHOULD", "SHOULD NOT": "SHOULD NOT", "RECOMMENDED": "SHOULD", "NOT RECOMMENDED": "SHOULD NOT"}
_RANK = {"MUST": 0, "MUST NOT": 0, "SHOULD": 1, "SHOULD NOT": 1}


@dataclass(frozen=True)
class Sentence:
    section: str   # "2.1", "A.2"
    letter: str    # a, b, ..., z, aa, ab, ...
    level: str     # MUST, MUST NOT, SHOULD, SHOULD NOT (SHALL and REQUIRED count as MUST)
    text: str      # the sentence, whitespace collapsed

    def id(self, rfc: int) -> str:
        return f"rfc{rfc}-{self.section}-{self.letter}"

    @property
    def starts(self) -> str:
        """Its first six words: what the catalogue keeps to prove an entry sits on its sentence."""
        return " ".join(self.text.split()[:6])


def letter(n: int) -> str:
    """0 -> a, 25 -> z, 26 -> aa, 27 -> ab, ..."""
    return chr(97 + n) if n < 26 else letter(n // 26 - 1) + chr(97 + n % 26)


def _body_lines(text: str) -> list[str]:
    """The text without page footers and headers; a paragraph cut by a page break is joined again
    (the blank lines around the break go with it)."""
    lines: list[str] = []
    after_break = False
    for line in text.replace("\f", "\n").splitlines():
        if _PAGE_FOOTER.match(line):
            while lines and not lines[-1]:
                lines.pop()
            after_break = True
        elif _PAGE_HEADER.match(line) or (after_break and not line.strip()):
            continue
        else:
            after_break = False
            lines.append(line.rstrip())
    return lines


def sections(text: str) -> list[tuple[str, str, str]]:
    """(number, title, body) of every numbered section and appendix, in order. The table of
    contents (dotted leaders, page numbers) and the front matter are not sections."""
    out: list[tuple[str, list[str]]] = []
    titles: dict[str, str] = {}
    for line in _body_lines(text):
        m = _HEADING.match(line)
        if m and not re.search(r"(\.\s?){3,}\d+$", line) and _plausible(m.group(1), out):
            out.append((m.group(1), []))
            titles[m.group(1)] = m.group(2).strip()
        elif out:
            out[-1][1].append(line)
    return [(num, titles[num], "\n".join(body)) for num, body in out]


def _plausible(number: str, seen: list) -> bool:
    """A heading's number follows the previous one's (stops '3. Foo' in a list from being a section)."""
    if not seen:
        return number == "1"
    prev = seen[-1][0].split(".")
    cur = number.split(".")
    if cur[0].isalpha() != prev[0].isalpha():
        return cur == ["A"]  # the first appendix after the numbered sections
    if len(cur) == len(prev) + 1:
        return cur[:-1] == prev and cur[-1] == "1"
    k = len(cur) - 1
    if len(cur) <= len(prev) and cur[:k] == prev[:k]:
        a, b = prev[k], cur[k]
        return (ord(b) == ord(a) + 1) if a.isalpha() else b.isdigit() and int(b) == int(a) + 1
    return False


def _paragraphs(body: str) -> list[str]:
    """Prose paragraphs; figures (lines of box drawing or mostly punctuation) are kept, as they may
    carry a key word in a note, but joined like prose."""
    paras, cur = [], []
    for line in body.splitlines():
        if line.strip():
            cur.append(line.strip())
        elif cur:
            paras.append(" ".join(cur))
            cur = []
    if cur:
        paras.append(" ".join(cur))
    return paras


def split_sentences(paragraph: str) -> list[str]:
    out, start = [], 0
    for m in _END.finditer(paragraph):
        head = paragraph[start:m.start() + 1].rstrip("\"')]")
        if _ABBREV.search(head):
            continue
        out.append(paragraph[start:m.end()].strip())
        start = m.end()
    out.append(paragraph[start:].strip())
    return [s for s in out if s]


def level_of(sentence: str) -> str | None:
    found = [LEVEL_OF[k] for k in _KEYWORD.findall(sentence)]
    return min(found, key=lambda lv: _RANK[lv]) if found else None


def normative_sentences(text: str) -> list[Sentence]:
    out = []
    for number, _title, body in sections(text):
        n = 0
        for para in _paragraphs(body):
            for s in split_sentences(para):
                lv = level_of(s)
                if lv is None or _BOILERPLATE.search(s):
                    continue
                out.append(Sentence(number, letter(n), lv, " ".join(s.split())))
                n += 1
    return out


def rfc_sentences(path: Path) -> list[Sentence]:
    return normative_sentences(path.read_text(encoding="utf-8", errors="replace"))


if __name__ == "__main__":  # python -m testbed.conformance.rfc_sentences rfc7296.txt: one line a sentence
    import sys

    rfc = int(re.sub(r"\D", "", Path(sys.argv[1]).stem))
    for s in rfc_sentences(Path(sys.argv[1])):
        print(f"{s.id(rfc)}\t{s.level}\t{s.text}")
