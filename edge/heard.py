"""What the device heard: words with their time and the recogniser's confidence.

A word travels as `HeardWord(text, start, end, confidence)` from the recogniser (or a transcript, where the
confidence is 1.0) through pairing to the memory, which learns from it in proportion to its confidence and not
at all below the device config's threshold. `text` is the word as the tokenizer writes it (lowercased tokens).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class HeardWord:
    text: str  # one token, as firstwords.edge.tokenize writes it
    # seconds, on the session's clock (the utterance's start when the source gives no word times)
    start: float
    end: float
    confidence: float = 1.0  # 0..1: the recogniser's posterior; 1.0 for a transcript

    def __post_init__(self) -> None:
        if not 0.0 <= self.confidence <= 1.0:
            raise ValueError(f"confidence must be within 0..1, got {self.confidence!r} for {self.text!r}")
