"""How `run`, `replay` and the benchmarks tell the user what a learner run did: a summary, the warnings (odd
input skipped and counted, never silent) and, after a fatal error, one line and a non-zero exit code.

Exit codes: 0 the run went through (warnings may have been printed); 1 a stage failed and the run stopped
early (what was heard until then is in the memory); 130 interrupted (Ctrl-C / SIGTERM) without an error.
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

from firstwords.edge.learner_types import LearnerReport

EXIT_OK, EXIT_FAILED, EXIT_INTERRUPTED = 0, 1, 130


def summary_text(rep: LearnerReport, mem_stats: dict, source: str) -> str:
    s = rep.stats
    lines = [
        f"words from: {source}",
        (f"utterances learned: {s['utterances']}   (speech segments {s['speech_segments']}, recognised as "
         f"nothing {s['empty_recognitions']}, without frames {s['utterances_without_frames']})"),
        (f"words learned this session: {s['words_learned']}   words in memory: {mem_stats.get('words')}   "
         f"episodes: {mem_stats.get('episodes')}"),
        "top words: " + ", ".join(f"{w} ({n})" for w, n in rep.top_words),
        (f"frames encoded: {s['frames_encoded']}   frames dropped: {s['frames_dropped']}   "
         f"audio overflows: {s['audio_overflows']}"),
        (f"media {rep.media_seconds:.1f} s in {rep.wall_seconds:.1f} s: realtime factor "
         f"{rep.realtime_factor:.2f}x"),
        "median latency (ms): " + ", ".join(f"{k} {v['median_ms']:.1f}" for k, v in rep.latency.items()),
    ]
    if rep.interrupted:
        lines.append("interrupted: what was heard so far is in the memory")
    return "\n".join(lines)


def summary_json(rep: LearnerReport, mem_stats: dict, wall_seconds: float) -> dict[str, Any]:
    s = rep.stats
    return {"utterances": s["utterances"], "words_learned": s["words_learned"],
            "words_in_memory": mem_stats.get("words"), "top_words": rep.top_words,
            "frames_dropped": s["frames_dropped"], "frames_unreadable": s["frames_unreadable"],
            "nonfinite_samples": s["nonfinite_samples"], "audio_overflows": s["audio_overflows"],
            "realtime_factor": round(rep.realtime_factor, 3), "wall_seconds": round(wall_seconds, 2),
            "median_ms": {k: v["median_ms"] for k, v in rep.latency.items()},
            "warnings": rep.warnings, "errors": rep.errors}


def exit_code(rep: LearnerReport, command: str, err: TextIO | None = None) -> int:
    """Print the warnings, and for a failed run one `error:` line; return the command's exit code."""
    err = err if err is not None else sys.stderr
    for w in rep.warnings:
        print(f"warning: {w}", file=err)
    if rep.errors:
        print(f"error: {command} stopped early, what was heard until then is in the memory: "
              + "; ".join(rep.errors), file=err)
        return EXIT_FAILED
    return EXIT_INTERRUPTED if rep.interrupted else EXIT_OK
