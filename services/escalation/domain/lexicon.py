"""The crisis lexicon: configured words and patterns, compiled once (one regex for words, one for patterns).

Matching rules, in the order they apply:

* **Chinese (any term with a non-ASCII character)** matches as a substring: Chinese has no word boundaries.
* **ASCII terms** (``lawyer``, ``12315``) match case-insensitively between ASCII word boundaries. Python's ``\\b``
  counts Chinese characters as word characters, so ``打12315投诉`` would never match with it; the boundaries here
  only look at ASCII letters, digits and ``_``. A term that ends in a letter also matches its plural (``s``/``es``);
  other inflections (``sued``, ``suing``) are written as patterns.
* **Patterns** are regular expressions used as written (case-insensitive); they must not use backreferences.
* **Exclusions** are longer phrases that contain a term but are harmless (``曝光度``, ``曝光补偿`` in camera talk,
  ``fire extinguisher``): a hit lying inside an occurrence of an exclusion is ignored.
* **Negation, within one clause**: a hit is ignored when a negation cue comes *before* it in the same clause and close
  to it: at most 4 characters in between for a Chinese cue (``没有起火``, ``不是要起诉``, ``没有人受伤``), at most
  3 words for an English one (``no fire``, ``not going to sue``, ``nobody was injured``). A clause ends at punctuation,
  a newline or a contrast word (但/但是/可是/不过/but/however), so ``it caught fire, not a joke`` and ``不是开玩笑，
  起火了`` still match. Idioms that start like a cue but negate nothing (没想到, 不小心, not only, no doubt) are not
  cues. The rule errs towards matching: a crisis missed costs more than a crisis group reading one message.
"""

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

_ASCII_WORD = "A-Za-z0-9_"
_CLAUSE_END = re.compile(r"[，。！？；：,.!?;:\n\r、…]|但是|但|可是|不过|\bbut\b|\bhowever\b", re.IGNORECASE)
# idioms first in each alternation, so that the lookahead refuses them before a shorter cue could match
_ZH_NEGATION = re.compile(
    r"(?!没想到|没过|没多久|没准|不小心|不得不|不仅|不但|不光|不管|不一会|不久)"
    r"(?:没有|没|不是|不会|不要|不想|不打算|并非|并没|并未|未曾|从未|从没|无人)"
    r".{0,4}$",
    re.DOTALL,
)
_EN_NEGATION = re.compile(
    r"(?:\b(?:not|no|never|nobody|nothing|none|neither|nor|without)\b|n't\b)"
    r"(?!\s+(?:only|just|doubt)\b)"
    r"(?:\W+[\w']+){0,3}\W*$",
    re.IGNORECASE,
)
_LOOKBACK = 80  # characters before a hit in which its clause and a negation cue are looked for


class LexiconError(ValueError):
    """A configured term or pattern that cannot be compiled; ``problems`` says which, as ``(loc, message)``."""

    def __init__(self, problems: list[tuple[tuple[str | int, ...], str]]) -> None:
        super().__init__("; ".join(message for _, message in problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class LexiconList:
    """One category of the lexicon (media, legal, safety…): its terms, patterns and harmless exclusions."""

    terms: Sequence[str] = ()
    patterns: Sequence[str] = ()
    exclusions: Sequence[str] = ()


@dataclass(frozen=True, slots=True)
class Hit:
    """Evidence of a match: the category, the configured term or pattern, and where it is in the text."""

    category: str
    term: str
    matched: str
    start: int
    end: int

    def snippet(self, text: str, around: int = 20) -> str:
        """The matched words with a little context, for an audit trail a human reads."""
        return text[max(0, self.start - around) : self.end + around]


@dataclass(frozen=True, slots=True)
class _Entry:
    category: str
    term: str
    exclusions: tuple[tuple[str, int], ...]  # (phrase, offset of the term inside it) for literal terms


def _literal(term: str) -> str:
    escaped = re.escape(term)
    if not term.isascii():
        return escaped
    plural = "(?:e?s)?" if term[-1].isalpha() else ""
    return f"(?<![{_ASCII_WORD}]){escaped}{plural}(?![{_ASCII_WORD}])"


def _check(pattern: str, loc: tuple[str | int, ...], problems: list[tuple[tuple[str | int, ...], str]]) -> None:
    try:
        re.compile(pattern, re.IGNORECASE)
    except re.error as exc:
        problems.append((loc, f"the pattern {pattern!r} does not compile: {exc.msg} at position {exc.pos}"))


class Lexicon:
    """A compiled crisis lexicon; ``search`` finds the first hit that counts, ``find_all`` every one."""

    def __init__(self, lists: Mapping[str, LexiconList], *, negation: bool = True) -> None:
        problems: list[tuple[tuple[str | int, ...], str]] = []
        entries: list[_Entry] = []
        alternatives: list[tuple[int, str]] = []  # (sort key, regex) so longer literals win at one position
        for category, lst in lists.items():
            for i, term in enumerate(lst.terms):
                if not term.strip():
                    problems.append(((category, "terms", i), "a term must not be empty"))
                    continue
                folded = term.casefold()
                excl = tuple((x, x.casefold().find(folded)) for x in lst.exclusions if folded in x.casefold())
                alternatives.append((-len(term), f"(?P<t{len(entries)}>{_literal(term)})"))
                entries.append(_Entry(category, term, excl))
            for i, pattern in enumerate(lst.patterns):
                _check(pattern, (category, "patterns", i), problems)
                alternatives.append((0, f"(?P<t{len(entries)}>{pattern})"))
                entries.append(_Entry(category, pattern, ()))
            for i, phrase in enumerate(lst.exclusions):
                if not any(t.casefold() in phrase.casefold() for t in lst.terms):
                    problems.append(((category, "exclusions", i), f"exclusion {phrase!r} contains none of the terms"))
        if problems:
            raise LexiconError(problems)
        alternatives.sort(key=lambda item: item[0])
        literals = [r for key, r in alternatives if key < 0]
        patterns = [r for key, r in alternatives if key == 0]
        # sre tries every alternative at every position; a first-character class in front lets it skip most positions
        first = {c for lst in lists.values() for t in lst.terms if t.strip() for c in (t[0].lower(), t[0].upper())}
        head = "(?=[" + "".join(re.escape(c) for c in sorted(first)) + "])" if first else ""
        try:
            self._literals = re.compile(head + "(?:" + "|".join(literals) + ")" if literals else r"(?!)", re.I)
            self._patterns = re.compile("|".join(patterns), re.I) if patterns else None
        except re.error as exc:  # each pattern compiled alone, so this is a clash between them (a group name)
            raise LexiconError([((), f"the patterns do not compile together: {exc.msg}")]) from None
        self._entries = entries
        self._negation = negation

    def search(self, text: str) -> Hit | None:
        """The first hit in ``text`` that is neither excluded nor negated, or None."""
        return next(self._hits(text), None)

    def find_all(self, text: str) -> list[Hit]:
        """Every hit in ``text`` that is neither excluded nor negated."""
        return list(self._hits(text))

    def search_any(self, texts: Iterable[str]) -> tuple[int, Hit] | None:
        """The first hit across ``texts`` (messages in order) with the index of its message, or None."""
        for index, text in enumerate(texts):
            hit = self.search(text)
            if hit is not None:
                return index, hit
        return None

    def _hits(self, text: str) -> Iterator[Hit]:
        pos = 0
        while (m := self._next_match(text, pos)) is not None:
            start, end = m.span()
            pos = max(end, start + 1)  # an empty pattern match must still move on
            entry = self._entries[int((m.lastgroup or "t0")[1:])]
            if self._excluded(text, start, entry):
                pos = start + 1  # another term may still start inside the excluded phrase
                continue
            if self._negation and _negated(text[max(0, start - _LOOKBACK) : start]):
                continue
            yield Hit(entry.category, entry.term, m.group(), start, end)

    def _next_match(self, text: str, pos: int) -> re.Match[str] | None:
        literal = self._literals.search(text, pos)
        pattern = self._patterns.search(text, pos) if self._patterns is not None else None
        if literal is None or pattern is None:
            return literal or pattern
        return pattern if pattern.start() < literal.start() else literal

    @staticmethod
    def _excluded(text: str, start: int, entry: _Entry) -> bool:
        for phrase, offset in entry.exclusions:
            at = start - offset
            if at >= 0 and text[at : at + len(phrase)].casefold() == phrase.casefold():
                return True
        return False


def _negated(before: str) -> bool:
    clause = _CLAUSE_END.split(before)[-1]
    return _ZH_NEGATION.search(clause) is not None or _EN_NEGATION.search(clause) is not None
