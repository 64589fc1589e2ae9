"""CVCL's tokenisation and vocabulary rules, shared by training (export/), the device (edge/) and the memory.

CVCL (wkvong/multimodal-baby) ran every utterance through spaCy's English tokenizer, lowercased each token and
joined them with spaces; training then split on whitespace and wrapped the ids as <sos> w1 ... <eos>, at most 25
in all. So "That's Mommy's ball, don't throw it!" is
    that 's mommy 's ball , do n't throw it !
and CVCL's vocabulary holds "'s", "n't", "," and "!" (among its most frequent ids), not "that's".

This module applies the same rules without spaCy: spaCy's English rules (prefix, suffix, infix and URL patterns,
and ~1,350 special cases such as "don't" -> "do" "n't") are data in rules/spacy_en.json (written from spaCy by
tools/dump_spacy_rules.py), and `_SpacyEnglish` re-implements the algorithm of spaCy's Tokenizer that applies
them. tests/test_tokenize_spacy.py compares the two on thousands of child-directed utterances.

Rule versions (recorded in a bundle's manifest as tokenizer.rule and in a checkpoint's meta.json):
    spacy_en_v1     the rules above, for CVCL's vocabularies and our own alike (the default)
    strip_punct_v0  firstwords' first rule: lowercase, punctuation except apostrophes removed, whitespace split
                    ("that's" stays whole). Artefacts that do not name a rule were made with it and keep it.

`tokens(text)` gives what the encoder sees (punctuation included); `words(text)` gives the words a listener
learns from: the same tokens without those that are punctuation only. Vocabulary: tokens of train frequency
>= 3, ordered by frequency (ties alphabetical), specials <pad> <unk> <sos> <eos> at 0..3.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from firstwords.edge.errors import BundleError

log = logging.getLogger(__name__)

PAD, UNK, SOS, EOS = "<pad>", "<unk>", "<sos>", "<eos>"
SPECIAL_TOKENS = {PAD: 0, UNK: 1, SOS: 2, EOS: 3}
MAX_TOKENS = 25  # CVCL's max_seq_len, <sos> and <eos> included
MIN_FREQ = 3  # CVCL keeps words seen at least 3 times in training utterances

SPACY_RULE = "spacy_en_v1"
LEGACY_RULE = "strip_punct_v0"
RULES = (SPACY_RULE, LEGACY_RULE)
CURRENT_RULE = SPACY_RULE
RULES_FILE = Path(__file__).with_name("rules") / "spacy_en.json"

_PUNCT = re.compile(r"[^\w\s']+", re.UNICODE)


class _SpacyEnglish:
    """spaCy's Tokenizer (spacy/tokenizer.pyx) over its English rules, in plain Python.

    Text is cut at whitespace; a single space after a token is absorbed, any other whitespace becomes a token of
    its own. Each piece is a special case as a whole, or loses prefixes and suffixes (one of each per round,
    stopping when the rest is a special case) until none is left; the rest is a special case, a URL, or split at
    infixes (hyphens between letters, "..." and the like). A second pass re-tokenises runs of tokens whose text
    together is a special case that affix splitting had cut apart (e.g. "(:" inside "(:)").
    """

    def __init__(self, rules: dict):
        self.prefix = re.compile(rules["prefix"]).search
        self.suffix = re.compile(rules["suffix"]).search
        self.infix = re.compile(rules["infix"]).finditer
        self.url = re.compile(rules["url"]).match
        self.specials: dict[str, tuple[str, ...]] = {k: tuple(v) for k, v in rules["specials"].items()}
        # spaCy's special-case matcher holds the special cases that affix rules would cut (its
        # faster_heuristics), each as the token sequence affix splitting makes of it.
        self.patterns: dict[str, list[tuple[str, ...]]] = {}
        for s in self.specials:
            if self._len(self.prefix, s) or self._len(self.suffix, s) or any(self.infix(s)) or " " in s:
                pat = tuple(t for t, _ in self._tokenize_affixes(s, False))
                self.patterns.setdefault(pat[0], []).append(pat)

    @staticmethod
    def _len(search, s: str) -> int:
        m = search(s)
        return m.end() - m.start() if m is not None else 0

    def __call__(self, text: str) -> list[str]:
        toks = self._tokenize_affixes(text, True)
        return [t for t, _ in self._apply_special_cases(toks)]

    def _tokenize_affixes(self, text: str, specials: bool) -> list[list]:
        toks: list[list] = []  # [text, followed by a space]
        if not text:
            return toks
        in_ws = text[0].isspace()
        start = 0
        for i, ch in enumerate(text):
            if ch.isspace() != in_ws:
                if start < i:
                    self._piece(text[start:i], toks, specials)
                if ch == " ":
                    toks[-1][1] = True
                    start = i + 1
                else:
                    start = i
                in_ws = not in_ws
        if start < len(text):
            self._piece(text[start:], toks, specials)
            toks[-1][1] = text[-1] == " " and not in_ws
        return toks

    def _piece(self, s: str, toks: list[list], specials: bool) -> None:
        if specials and s in self.specials:
            toks.extend([t, False] for t in self.specials[s])
            return
        prefixes, suffixes = [], []
        last = -1
        while s and len(s) != last:
            if specials and s in self.specials:
                break
            last = len(s)
            pre = self._len(self.prefix, s)
            if pre:
                minus_pre = s[pre:]
                if minus_pre and specials and minus_pre in self.specials:
                    prefixes.append(s[:pre])
                    s = minus_pre
                    break
            suf = self._len(self.suffix, s[pre:])
            if suf:
                minus_suf = s[:-suf]
                if minus_suf and specials and minus_suf in self.specials:
                    suffixes.append(s[-suf:])
                    s = minus_suf
                    break
            if pre and suf and pre + suf <= len(s):
                prefixes.append(s[:pre])
                suffixes.append(s[-suf:])
                s = s[pre:-suf]
            elif pre:
                prefixes.append(s[:pre])
                s = s[pre:]
            elif suf:
                suffixes.append(s[-suf:])
                s = s[:-suf]
        toks.extend([p, False] for p in prefixes)
        if s:
            if specials and s in self.specials:
                toks.extend([t, False] for t in self.specials[s])
            elif self.url(s):
                toks.append([s, False])
            else:
                start = 0
                for m in self.infix(s):
                    if m.start() == 0:  # an infix at the very start does not split
                        continue
                    if m.start() != start:
                        toks.append([s[start:m.start()], False])
                    if m.start() != m.end():
                        toks.append([s[m.start():m.end()], False])
                    start = m.end()
                if s[start:]:
                    toks.append([s[start:], False])
        toks.extend([x, False] for x in reversed(suffixes))

    def _apply_special_cases(self, toks: list[list]) -> list[list]:
        texts = [t for t, _ in toks]
        found = []
        for i, t in enumerate(texts):
            for pat in self.patterns.get(t, ()):
                if tuple(texts[i:i + len(pat)]) == pat:
                    found.append((i, i + len(pat)))
        if not found:
            return toks
        # As spaCy: longest first (then leftmost); a match whose first or last token is taken already is dropped.
        found.sort(key=lambda se: (-(se[1] - se[0]), se[0]))
        seen: set[int] = set()
        kept = []
        for s, e in found:
            if s not in seen and e - 1 not in seen:
                kept.append((s, e))
            seen.update(range(s, e))
        out, i = [], 0
        for s, e in sorted(kept):
            out.extend(toks[i:s])
            joined = "".join(t + (" " if sp else "") for t, sp in toks[s:e - 1]) + toks[e - 1][0]
            if joined in self.specials:
                out.extend([t, False] for t in self.specials[joined])
                out[-1][1] = toks[e - 1][1]
            else:
                out.extend(toks[s:e])
            i = e
        out.extend(toks[i:])
        return out


@functools.cache
def _spacy_english() -> _SpacyEnglish:
    try:
        rules = json.loads(RULES_FILE.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise BundleError(f"{RULES_FILE}: cannot read the tokenizer rules ({e}); reinstall firstwords") from e
    return _SpacyEnglish(rules)


def spacy_rules_from_tokenizer(tokenizer, spacy_version: str, orth: int) -> dict:
    """The rules of a spaCy Tokenizer as JSON-able data (for tools/dump_spacy_rules.py; `orth` is
    spacy.attrs.ORTH). Needs no spaCy import here: the tokenizer object is passed in."""
    if tokenizer.token_match is not None or not tokenizer.faster_heuristics:
        raise ValueError("this tokenizer has a token_match or no faster_heuristics: not spaCy's English default")
    return {"source": f"spaCy {spacy_version} (MIT licence), spacy.blank('en').tokenizer",
            "prefix": tokenizer.prefix_search.__self__.pattern,
            "suffix": tokenizer.suffix_search.__self__.pattern,
            "infix": tokenizer.infix_finditer.__self__.pattern,
            "url": tokenizer.url_match.__self__.pattern,
            "specials": {k: [d[orth] for d in v] for k, v in tokenizer.rules.items()}}


def check_rule(rule: str) -> str:
    if rule not in RULES:
        raise BundleError(f"unknown tokenizer rule {rule!r}; this firstwords knows {', '.join(RULES)}. "
                          "Upgrade firstwords or re-export the bundle")
    return rule


def rule_of(recorded, where: str) -> str:
    """The rule an artefact (bundle manifest, checkpoint) was made with: the one it names, or the old rule, with
    a warning, when it names none (it predates the record)."""
    if recorded is None:
        log.warning("%s does not name its tokenizer rule, so it was made before firstwords tokenised as CVCL does; "
                    "it keeps the old rule (%s: \"that's\" whole, punctuation dropped), which its vocabulary was "
                    "counted with. Re-export it to record that rule; re-train to use %s", where, LEGACY_RULE,
                    SPACY_RULE)
        return LEGACY_RULE
    if not isinstance(recorded, str):
        raise BundleError(f"{where}: the tokenizer rule must be a string, got {recorded!r}")
    return check_rule(recorded)


def manifest_entry(rule: str = CURRENT_RULE, max_tokens: int = MAX_TOKENS) -> dict:
    """The bundle manifest's "tokenizer" object for a rule."""
    return {"rule": check_rule(rule), "lowercase": True, "strip_punctuation": rule == LEGACY_RULE,
            "add_sos_eos": True, "max_tokens": max_tokens, "special_tokens": dict(SPECIAL_TOKENS)}


def tokens(text: str, rule: str = CURRENT_RULE) -> list[str]:
    """The tokens of an utterance as the utterance encoder sees them (lowercased; punctuation kept under
    spacy_en_v1). CVCL: ' '.join(t.lower() for t in spacy_tokens).split()."""
    if check_rule(rule) == LEGACY_RULE:
        text = _PUNCT.sub(" ", text.lower())
        return [w.strip("'") for w in text.split() if w.strip("'")]
    return " ".join(t.lower() for t in _spacy_english()(text)).split()


def is_word(token: str) -> bool:
    """A token that says something: not punctuation only ("'s" and "n't" are words, "," and "..." are not)."""
    return any(c.isalnum() for c in token)


def words(text: str, rule: str = CURRENT_RULE) -> list[str]:
    """The words of an utterance: its tokens without punctuation ("that's it!" -> ["that", "'s", "it"]).
    What the memory learns from; recogniser output and transcripts pass through here."""
    return [t for t in tokens(text, rule) if is_word(t)]


def build_vocab(texts: Iterable[str], min_freq: int = MIN_FREQ, rule: str = CURRENT_RULE) -> dict[str, int]:
    """Specials first, then tokens with frequency >= min_freq, most frequent first (ties alphabetical)."""
    counts = Counter(w for t in texts for w in tokens(t, rule))
    kept = sorted((w for w, c in counts.items() if c >= min_freq and w not in SPECIAL_TOKENS),
                  key=lambda w: (-counts[w], w))
    vocab = dict(SPECIAL_TOKENS)
    for w in kept:
        vocab[w] = len(vocab)
    return vocab


@dataclass
class Vocab:
    """Word -> id mapping with CVCL's specials at 0..3, and the tokenizer rule its words were counted with."""

    ids: dict[str, int]
    max_tokens: int = MAX_TOKENS
    rule: str = CURRENT_RULE
    _inverse: list[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        check_rule(self.rule)
        for tok, idx in SPECIAL_TOKENS.items():
            if self.ids.get(tok) != idx:
                raise BundleError(f"vocabulary must map {tok} to {idx} (CVCL's layout); got {self.ids.get(tok)!r}")
        self._inverse = [""] * len(self.ids)
        for w, i in self.ids.items():
            if not (0 <= i < len(self.ids)) or self._inverse[i]:
                raise BundleError(f"vocabulary ids must be 0..{len(self.ids) - 1} without gaps or repeats; "
                                  f"{w!r} has id {i}")
            self._inverse[i] = w

    @classmethod
    def from_file(cls, path: str | Path, max_tokens: int = MAX_TOKENS, rule: str = CURRENT_RULE) -> Vocab:
        path = Path(path)
        try:
            ids = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise BundleError(f"{path}: cannot read the vocabulary ({e}); re-export the bundle") from e
        if not isinstance(ids, dict) or not all(isinstance(k, str) and type(v) is int for k, v in ids.items()):
            raise BundleError(f"{path}: the vocabulary must be a JSON object of word -> integer id")
        return cls(ids, max_tokens, rule)

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, word: str) -> bool:
        return word in self.ids and word not in SPECIAL_TOKENS

    def word(self, idx: int) -> str:
        return self._inverse[idx]

    def tokens(self, text: str) -> list[str]:
        return tokens(text, self.rule)

    def words(self, text: str) -> list[str]:
        return words(text, self.rule)

    def encode(self, text: str) -> list[int]:
        """Token ids of one utterance: <sos> w1 ... <eos>, truncated to max_tokens in all."""
        body = [self.ids.get(w, SPECIAL_TOKENS[UNK]) for w in self.tokens(text)][: self.max_tokens - 2]
        return [SPECIAL_TOKENS[SOS], *body, SPECIAL_TOKENS[EOS]]

    def encode_batch(self, texts: list[str]) -> np.ndarray:
        """int64 [N, L] right-padded with <pad>; L = the longest utterance in the batch."""
        seqs = [self.encode(t) for t in texts]
        width = max((len(s) for s in seqs), default=2)
        out = np.zeros((len(seqs), width), dtype=np.int64)
        for i, s in enumerate(seqs):
            out[i, : len(s)] = s
        return out

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.ids, indent=0, ensure_ascii=False), encoding="utf-8")
