"""CVCL's tokenisation and vocabulary rules, shared by training (export/) and the device (edge/).

lowercase -> strip punctuation except apostrophes -> whitespace split -> <sos> + ids + <eos>, at most
`max_tokens` ids in all (CVCL: 25). Unknown words map to <unk>. Vocabulary: tokens with train frequency >= 3.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from firstwords.edge.errors import BundleError

PAD, UNK, SOS, EOS = "<pad>", "<unk>", "<sos>", "<eos>"
SPECIAL_TOKENS = {PAD: 0, UNK: 1, SOS: 2, EOS: 3}
MAX_TOKENS = 25  # CVCL's max_seq_len, <sos> and <eos> included
MIN_FREQ = 3  # CVCL keeps words seen at least 3 times in training utterances

_PUNCT = re.compile(r"[^\w\s']+", re.UNICODE)


def words(text: str) -> list[str]:
    """The words of an utterance as the tokenizer sees them (lowercased, punctuation stripped)."""
    text = _PUNCT.sub(" ", text.lower())
    return [w.strip("'") for w in text.split() if w.strip("'")]


def build_vocab(texts: Iterable[str], min_freq: int = MIN_FREQ) -> dict[str, int]:
    """Specials first, then words with frequency >= min_freq, most frequent first (ties alphabetical)."""
    counts = Counter(w for t in texts for w in words(t))
    kept = sorted((w for w, c in counts.items() if c >= min_freq and w not in SPECIAL_TOKENS),
                  key=lambda w: (-counts[w], w))
    vocab = dict(SPECIAL_TOKENS)
    for w in kept:
        vocab[w] = len(vocab)
    return vocab


@dataclass
class Vocab:
    """Word -> id mapping with CVCL's specials at 0..3."""

    ids: dict[str, int]
    max_tokens: int = MAX_TOKENS
    _inverse: list[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
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
    def from_file(cls, path: str | Path, max_tokens: int = MAX_TOKENS) -> Vocab:
        path = Path(path)
        try:
            ids = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise BundleError(f"{path}: cannot read the vocabulary ({e}); re-export the bundle") from e
        if not isinstance(ids, dict) or not all(isinstance(k, str) and type(v) is int for k, v in ids.items()):
            raise BundleError(f"{path}: the vocabulary must be a JSON object of word -> integer id")
        return cls(ids, max_tokens)

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, word: str) -> bool:
        return word in self.ids and word not in SPECIAL_TOKENS

    def word(self, idx: int) -> str:
        return self._inverse[idx]

    def encode(self, text: str) -> list[int]:
        """Token ids of one utterance: <sos> w1 ... <eos>, truncated to max_tokens in all."""
        body = [self.ids.get(w, SPECIAL_TOKENS[UNK]) for w in words(text)][: self.max_tokens - 2]
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
