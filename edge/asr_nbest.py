"""Words the recogniser nearly heard: confidences from its N best hypotheses.

A decoder's best hypothesis is one guess. When "bag" is said by a voice the acoustic model knows poorly, the
best path may say "bad" while "bag" sits in many of the runner-up hypotheses. Learning only from the best path
drops such words; learning from every candidate would put words on speech that never said them. In between:
each word gets the share of the N best hypotheses that contain it at that place (an N-best estimate of its
posterior, every hypothesis weighted alike: pocketsphinx reports no usable per-hypothesis score). A word
on the best path keeps the larger of that share and its lattice posterior; a competing word becomes a
HeardWord of its own, timed by the best-path words it stands in for, so the memory learns it in proportion to
its share and not at all below `[memory] min_word_confidence`.

Measured by tools/bench_hearing.py (six voices, see README "Hearing"): object recall 0.71 -> 0.77 at no object
false alarm in off-topic speech; the best hypothesis (the transcript's text and its word error) is unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from difflib import SequenceMatcher

from firstwords.edge.heard import HeardWord

N_BEST = 5  # hypotheses taken (more let in more acoustic neighbours: measured on 5, 10, 20, 50)
RIVAL_SHARE = 0.4  # a competing word stands in at least 2 of the 5 (1 of 5 let in object false alarms)


def nbest_words(best: Sequence[HeardWord], hypotheses: Sequence[Sequence[str]],
                floor: float = RIVAL_SHARE) -> tuple[list[HeardWord], list[HeardWord]]:
    """`best`: the best path's words (text, start, end, lattice posterior); `hypotheses`: the N best word
    sequences (fillers removed), the best one among them. Returns the best path's words with their confidence
    raised to their N-best share where that is larger, and the competing words with a share of at least
    `floor`, sorted by start time."""
    if not hypotheses or not best:
        return list(best), []
    texts = [w.text for w in best]
    n = len(hypotheses)
    kept = [0] * len(best)  # hypotheses that keep each best-path word
    rivals: dict[tuple[str, int, int], int] = {}  # (word, first, last best-path index it stands in for)
    for hyp in hypotheses:
        seen: set[tuple[str, int, int]] = set()
        for op, i1, i2, j1, j2 in SequenceMatcher(a=texts, b=list(hyp), autojunk=False).get_opcodes():
            if op == "equal":
                for i in range(i1, i2):
                    kept[i] += 1
                continue
            if op == "delete":
                continue
            # "replace" or "insert": the words standing where best[i1:i2] stands, word for word when as many
            for j, w in enumerate(hyp[j1:j2]):
                key = (w, i1 + j, i1 + j + 1) if i2 - i1 == j2 - j1 else (w, i1, i2)
                if key not in seen:
                    seen.add(key)
                    rivals[key] = rivals.get(key, 0) + 1
    out = [HeardWord(w.text, w.start, w.end, max(w.confidence, kept[i] / n)) for i, w in enumerate(best)]
    on_path = {(w.text, i) for i, w in enumerate(best)}
    share: dict[tuple[str, float, float], float] = {}
    for (word, i1, i2), count in rivals.items():
        if count / n < floor or any((word, i) in on_path for i in range(i1, i2)):
            continue
        start, end = _span(best, i1, i2)
        key = (word, start, end)
        share[key] = max(share.get(key, 0.0), count / n)
    rivals = sorted((HeardWord(w, s, e, c) for (w, s, e), c in share.items()), key=lambda w: (w.start, w.end))
    return out, rivals


def _span(best: Sequence[HeardWord], i1: int, i2: int) -> tuple[float, float]:
    """Time of the best-path words i1..i2-1; for an insertion (i1 == i2), its two neighbours' (the gap
    between them is often empty)."""
    if i2 > i1:
        return best[i1].start, best[i2 - 1].end
    return best[max(i1 - 1, 0)].start, best[min(i1, len(best) - 1)].end
