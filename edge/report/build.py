"""Build the session report: what the device learned, from its own memory and bundle (numpy + onnxruntime).

    build_report(memory="work/memory.db", bundle="work/bundle", out="report.html",
                 eval_data="work/corpus/eval.json", session="work/session")

Sections: vocabulary growth, the word table, localisation maps, alignment, n-way accuracy, the run's facts.
A section that cannot be drawn (no eval data, a bundle without the spatial output, an empty memory) says why
in a marked box; the rest of the report is still written."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from html import escape
from pathlib import Path

from firstwords.edge.atomic import atomic_write_text
from firstwords.edge.bundle import Bundle, load_bundle
from firstwords.edge.encode import Encoder
from firstwords.edge.errors import DataError, InputError
from firstwords.edge.memory import AssociativeMemory
from firstwords.edge.report import html
from firstwords.edge.report.data import Criterion, MemoryReport, best_moments, read_memory
from firstwords.edge.report.evalset import EvalSet, load_eval_set
from firstwords.edge.report.figures import accuracy_section, alignment_section, maps_section
from firstwords.edge.report.plots import Plotter
from firstwords.edge.report.png import media_uri

log = logging.getLogger(__name__)

MAX_TABLE_WORDS = 200  # the word table's cap (the count of all words is stated above it)
MOMENT_WORDS = 20  # words whose best-matching remembered moments are shown


@dataclass
class ReportResult:
    path: Path
    words: int
    known: int
    seconds: float
    sections: dict[str, str] = field(default_factory=dict)  # section id -> "ok" or why it is marked


def growth_section(rep: MemoryReport, plot: Plotter) -> str:
    crit = html.note(rep.criterion.describe() + ". Words heard = heard in at least one stored utterance.",
                     raw=True)
    if not rep.words:
        return html.section("growth", "Vocabulary growth", crit, html.warn("the memory is empty: nothing has been "
                            "learned yet (replay a session or run the device first)"))
    hx, hy = rep.heard_curve
    kx, ky = rep.known_curve
    by_utt = plot.line_chart([("words heard", hx, hy), ("words known", kx, ky)], "Words known vs utterances heard",
                             "utterances heard", "words")
    minutes = [("words heard", rep.time_of(hx) / 60, hy), ("words known", rep.time_of(kx) / 60, ky)]
    by_time = plot.line_chart(minutes, "Words known vs session time", "session time (minutes)", "words")
    summary = html.note(f"{len(rep.known)} of {len(rep.words)} words known after {len(rep.episode_times)} "
                        f"stored utterances ({rep.stats.get('utterances_learned', 0)} learned from in all).")
    return html.section("growth", "Vocabulary growth", crit, summary, html.img(by_utt, "words known vs utterances"),
                        html.img(by_time, "words known vs session time"))


def words_section(rep: MemoryReport, max_words: int) -> str:
    if not rep.words:
        return html.section("words", "Words", html.warn("the memory is empty: no words to list"))
    shown = rep.words[:max_words]
    media_note = (f"{rep.media_kept} remembered moments carry a thumbnail (kept with --keep-media)."
                  if rep.media_kept else "No thumbnails: media were not kept. Replay or run with --keep-media "
                  "to keep a small picture of each remembered moment; the moments' words are listed instead.")
    rows = []
    for f in shown:
        moments = rep.moments.get(f.word)
        if moments is None:
            cell = ""  # the header says moments are looked up for the first MOMENT_WORDS words
        elif not moments:
            cell = '<span class="note">no stored moment</span>'
        else:
            parts = []
            for m in moments:
                uri = media_uri(m.media) if m.media else None
                label = escape(f"{html.fmt_time(m.t - rep.t0)} “{m.text}”")
                parts.append(f'<span class="moment">{html.img(uri, m.text, "thumb")}<br>{label}</span>' if uri
                             else label)
            cell = ("" if any(m.media for m in moments) else "<br>").join(parts)
        rows.append([escape(f.word), str(f.exposures), html.fmt_time(f.first_seen - rep.t0),
                     html.fmt_time(None if f.known_at is None else f.known_at - rep.t0), f"{f.strength:.3f}", cell])
    head = html.note(f"Showing {len(shown)} of {len(rep.words)} words, strongest first; remembered moments for the "
                     f"first {MOMENT_WORDS}. Times are session time (h:mm:ss from the first remembered moment). "
                     f"{media_note}")
    return html.section("words", "Words", head, html.table(
        ["word", "exposures", "first heard", "known since", "strength", "best-matching remembered moments"],
        rows, numeric={1, 4}))


def facts_section(rep: MemoryReport | None, bundle: Bundle, session: Path | None, run_stats: dict | None,
                  plot: Plotter, spatial: bool) -> str:
    m = bundle.manifest
    acc = (bundle.parity.get("accuracy") or {}) if isinstance(bundle.parity, dict) else {}
    facts = [("bundle", str(bundle.source)), ("model config", bundle.model_config or "?"),
             ("quantisation", bundle.quantization), ("embedding dim", str(bundle.embedding_dim)),
             ("training data", str(m.get("training_data", "?"))), ("device config (export)", str(m.get("device", "?"))),
             ("parity accuracy at export", ", ".join(f"{k} {v:.3f}" for k, v in acc.items() if v is not None) or "—"),
             ("spatial output (maps)", "yes" if spatial else "no (re-export for maps)")]
    if rep is not None:
        s = rep.stats
        facts += [("memory", str(rep.path)), ("words / stored moments", f"{s['words']} / {s['episodes']}"),
                  ("utterances learned from", str(s["utterances_learned"])),
                  ("frames learned from", str(s["frames_learned"])), ("memory on disk", f"{s['bytes_on_disk']:,} bytes"),
                  ("session span in memory", html.fmt_time(float(rep.episode_times[-1] - rep.t0))
                   if len(rep.episode_times) else "—")]
    parts = []
    if session is not None:
        meta_path = session / "session.json" if session.is_dir() else session
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            facts += [("session", str(session)), ("session length", html.fmt_time(float(meta.get("duration", 0)))),
                      ("session utterances", str(meta.get("utterances", "?"))),
                      ("frames / fps", f"{meta.get('frames', '?')} / {meta.get('fps', '?')}")]
        except (OSError, ValueError, TypeError) as e:
            parts.append(html.warn(f"session facts: cannot read {meta_path} ({e})"))
    if run_stats:
        for k in ("config", "utterances", "frames_encoded", "frames_dropped", "audio_overflows", "realtime_factor",
                  "wall_seconds"):
            if k in run_stats:
                facts.append((k.replace("_", " "), str(run_stats[k])))
    else:
        parts.append(html.note("Frames dropped, audio overflows and the real-time factor are not recorded in "
                               "the memory: pass --run-stats with the JSON line of `firstwords replay --json`."))
    facts.append(("plots drawn with", plot.backend))
    return html.section("facts", "The run's facts", html.facts_list(facts), *parts)


def build_report(memory: str | Path, bundle: str | Path | Bundle, out: str | Path, *,
                 eval_data: str | Path | None = None, session: str | Path | None = None,
                 run_stats: str | Path | None = None, criterion: Criterion | None = None,
                 max_words: int = MAX_TABLE_WORDS, use_matplotlib: bool | None = None,
                 threads: int | None = None) -> ReportResult:
    t0 = time.monotonic()
    criterion = criterion or Criterion()
    if max_words < 1:
        raise InputError(f"max_words must be at least 1, got {max_words}")
    session = Path(session) if session is not None else None
    if session is not None and not session.exists():
        raise DataError(f"{session}: no such session folder or session.json; check --session")
    stats = None
    if run_stats is not None:
        try:
            stats = json.loads(Path(run_stats).read_text(encoding="utf-8").strip().splitlines()[-1])
        except (OSError, ValueError, IndexError) as e:
            raise DataError(f"{run_stats}: not a JSON line from `firstwords replay --json` ({e})") from e
    evalset: EvalSet | None = load_eval_set(eval_data) if eval_data is not None else None  # errors before work
    b = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
    plot = Plotter(use_matplotlib)
    result = ReportResult(Path(out), 0, 0, 0.0)
    with AssociativeMemory.open_existing(memory) as mem:
        if mem.dim != b.embedding_dim:
            raise InputError(f"{memory} holds embeddings of dim {mem.dim} but the bundle's are {b.embedding_dim}: "
                             "give the bundle this memory was learned with")
        rep = read_memory(mem, criterion)
        best_moments(mem, rep, [f.word for f in rep.words[:MOMENT_WORDS]])
        vectors = mem.word_vectors()
    sections = [growth_section(rep, plot), words_section(rep, max_words)]
    enc = Encoder(b, threads=threads) if evalset is not None else None  # eval frames are all it encodes
    maps, spatial = maps_section(rep, vectors, b, evalset, enc, threads)
    sections += [maps, alignment_section(rep, vectors, evalset, enc, plot), accuracy_section(vectors, evalset, enc, plot),
                 facts_section(rep, b, session, stats, plot, spatial)]
    result.sections = {s.split('"')[1]: ("marked" if 'class="warn"' in s else "ok") for s in sections}
    subtitle = (f"memory {memory} · bundle {b.source} · {len(rep.words)} words, {len(rep.known)} known · "
                f"written {time.strftime('%Y-%m-%d %H:%M')}")
    atomic_write_text(Path(out), html.page("What the device learned", subtitle, sections))
    result.words, result.known = len(rep.words), len(rep.known)
    result.seconds = time.monotonic() - t0
    return result
