"""Training and evaluation data readers: CVCL's metadata format, eval sets, pairs.

Formats (compatible with wkvong/multimodal-baby, so SAYCam users can point firstwords at CVCL's files):
- metadata `{"data": [{"utterance": "...", "frame_filenames": [...], "timestamps": [...], ...}]}`;
- (CVCL's raw transcript CSV, `Time, Video Name, Utterance, Speaker`, is read by the one parser in
  firstwords.edge.transcripts: `load_transcript(path)` / `parse_cvcl_csv(...)`);
- eval sets either `{"data": [{"category": "shoe", "frame_filename": "eval_frames/000001.jpg"}]}` (ours) or
  CVCL's pre-generated trials `{"data": [{"target_category", "target_img_filename", "foil_categories",
  "foil_img_filenames", "trial_num"}]}`.

Bad records are counted by kind and skipped with one log line per kind (never a silent drop of the whole set,
never a crash deep inside a batch). Nothing here imports torch: the readers work on an install without the
train extra (the torch dataset over these records is `export.pairs.PairDataset`).
"""

from __future__ import annotations

import collections
import json
import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from firstwords.edge.errors import DataError, MissingExtraError
from firstwords.edge.evaluate import Trial

log = logging.getLogger(__name__)

# Keys CVCL's preprocessing writes, plus the ones our sample corpus adds. Others are kept in `meta` but
# reported once (a typo such as "frame_filename" would otherwise go unnoticed).
KNOWN_RECORD_KEYS = frozenset({
    "utterance", "frame_filenames", "timestamps",                                   # required
    "utterance_num", "num_frames", "transcript_filename", "video_filename",          # CVCL
    "video", "start_time", "end_time", "categories_in_view", "named", "speaker",   # sample corpus
})
_EXAMPLES_PER_KIND = 3
_SURROGATES = re.compile("[\ud800-\udfff]")  # what undecodable bytes become under surrogateescape


@dataclass
class UtteranceRecord:
    utterance: str
    frame_paths: list[Path]
    timestamps: list[float]
    meta: dict = field(default_factory=dict)  # the record's other keys, kept as read


@dataclass
class LoadReport:
    records: list[UtteranceRecord]
    problems: collections.Counter = field(default_factory=collections.Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)
    source: str = ""
    n_read: int = 0

    def note(self, kind: str, example: str, count: int = 1) -> None:
        self.problems[kind] += count
        ex = self.examples.setdefault(kind, [])
        if len(ex) < _EXAMPLES_PER_KIND:
            ex.append(example)

    def summary(self) -> str:
        head = f"{self.source}: {len(self.records)} of {self.n_read} records usable"
        if not self.problems:
            return head
        lines = [head + "; problems:"]
        for kind, n in sorted(self.problems.items()):
            lines.append(f"  {kind}: {n} (e.g. {'; '.join(self.examples.get(kind, []))})")
        return "\n".join(lines)


@dataclass
class EvalSet:
    """Labelled held-out images; `trials` is set when the file held CVCL's pre-generated trials.

    For a trial file, `labels` / `frame_paths` list each distinct image once and `trials` index into them
    (target first, as in CVCL), ready for `edge.evaluate.score_trials`."""

    labels: list[str]
    frame_paths: list[Path]
    trials: list[Trial] | None = None

    @property
    def categories(self) -> list[str]:
        return sorted(set(self.labels))


# ----------------------------------------------------------------------------------------------- reading


def _read_json(path: Path, what: str) -> object:
    try:
        raw = path.read_bytes()
    except FileNotFoundError as e:
        raise DataError(f"{path}: {what} file not found; build the sample corpus with "
                        f"`python tools/build_sample_corpus.py --out work/corpus` or check the path") from e
    except OSError as e:
        raise DataError(f"{path}: cannot read the {what} file ({e})") from e
    # surrogateescape: a record with bad bytes becomes a record with lone surrogates, which we count and
    # skip, rather than one bad byte making the whole file unreadable.
    text = raw.decode("utf-8", errors="surrogateescape")
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON ({e.msg} at line {e.lineno} column {e.colno}); "
                        f"the {what} file must be JSON of the form {{\"data\": [...]}}") from e


def _data_list(obj: object, path: Path, what: str) -> list:
    if isinstance(obj, dict) and isinstance(obj.get("data"), list):
        return obj["data"]
    if isinstance(obj, list):  # a bare list of records is accepted too
        return obj
    raise DataError(f"{path}: expected a JSON object {{\"data\": [...]}} holding the {what} records; "
                    f"got {type(obj).__name__}"
                    + (f" with keys {sorted(obj)[:8]}" if isinstance(obj, dict) else ""))


def _resolve(name: str, root: Path) -> Path:
    p = Path(name)
    if p.is_absolute():
        if p.exists():
            return p
        # CVCL's files hold absolute paths from their cluster; try the same file name under our root.
        for cand in (root / p.name, root / p.parent.name / p.name):
            if cand.exists():
                return cand
        return p
    return root / p


def _is_number(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def load_cvcl_metadata(json_path: str | Path, frames_root: str | Path | None = None, *,
                       strict_frames: bool = True) -> LoadReport:
    """Read CVCL-format metadata. Frame paths are relative to `frames_root` (default: the JSON's folder).

    strict_frames=True checks every frame file exists (a missing one is dropped and counted; a record left
    without frames is dropped and counted). strict_frames=False skips the existence check (fast, for huge
    sets on slow disks; a missing file then fails in `load_frame` with the file's name).
    Raises DataError when no record is usable, saying why."""
    path = Path(json_path)
    root = Path(frames_root) if frames_root is not None else path.parent
    items = _data_list(_read_json(path, "metadata"), path, "utterance")
    report = LoadReport(records=[], source=str(path), n_read=len(items))
    unknown_seen: collections.Counter = collections.Counter()
    for i, item in enumerate(items):
        where = f"record {i}"
        if not isinstance(item, dict):
            report.note("not_an_object", f"{where} is {type(item).__name__}")
            continue
        unknown = set(item) - KNOWN_RECORD_KEYS
        if unknown:  # kept: CVCL-derived files may carry extra fields; reported so typos are seen
            unknown_seen.update(unknown)
            report.note("unknown_keys", f"{where}: {', '.join(sorted(unknown))}")
        utt = item.get("utterance")
        if "utterance" not in item:
            report.note("missing_utterance", where)
            continue
        if not isinstance(utt, str):
            report.note("bad_utterance", f"{where}: utterance is {type(utt).__name__} {utt!r:.40}")
            continue
        if _SURROGATES.search(utt):
            shown = utt.encode("utf-8", errors="backslashreplace").decode("ascii", errors="replace")
            report.note("undecodable_text", f"{where}: {shown[:40]!r} is not UTF-8")
            continue
        if not utt.strip():
            report.note("empty_utterance", where)
            continue
        names = item.get("frame_filenames")
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            report.note("bad_frame_filenames", f"{where}: frame_filenames must be a list of file names")
            continue
        if not names:
            report.note("no_frames", f"{where}: {utt[:30]!r} lists no frames")
            continue
        stamps = item.get("timestamps")
        if stamps is None:
            stamps_f = [float("nan")] * len(names)
        elif (not isinstance(stamps, list) or len(stamps) != len(names)
              or not all(_is_number(t) for t in stamps)):
            report.note("bad_timestamps", f"{where}: {len(stamps) if isinstance(stamps, list) else stamps!r}"
                        f" timestamps for {len(names)} frames")
            stamps_f = [float("nan")] * len(names)  # the pair is still usable without times
        else:
            stamps_f = [float(t) for t in stamps]
        paths, kept_t = [], []
        for name, t in zip(names, stamps_f):
            p = _resolve(name, root)
            if strict_frames and not p.is_file():
                report.note("missing_frame", str(p))
                continue
            paths.append(p)
            kept_t.append(t)
        if not paths:
            report.note("no_frames_left", f"{where}: all {len(names)} frames missing")
            continue
        meta = {k: v for k, v in item.items() if k not in ("utterance", "frame_filenames", "timestamps")}
        report.records.append(UtteranceRecord(utt, paths, kept_t, meta))
    for kind, n in sorted(report.problems.items()):
        log.warning("%s: %s: %d (e.g. %s)%s", path, kind, n, "; ".join(report.examples[kind]),
                    " - kept" if kind == "unknown_keys" else " - skipped")
    if not report.records:
        raise DataError(f"{path}: none of the {len(items)} utterance records is usable. "
                        + (report.summary() if report.problems else "The file's data list is empty.")
                        + ("" if frames_root is not None else
                           f"\nFrame paths were resolved under {root}; pass frames_root if they live "
                           "elsewhere."))
    return report


def load_eval_set(json_path: str | Path, frames_root: str | Path | None = None) -> EvalSet:
    """Our eval format or CVCL's pre-generated trial format (detected from the first record's keys)."""
    path = Path(json_path)
    root = Path(frames_root) if frames_root is not None else path.parent
    items = _data_list(_read_json(path, "evaluation"), path, "evaluation")
    if not items:
        raise DataError(f"{path}: the evaluation set is empty")
    first = items[0] if isinstance(items[0], dict) else {}
    if "target_img_filename" in first:
        return _load_trials(items, path, root)
    labels, paths, missing, bad = [], [], [], 0
    for it in items:
        if not (isinstance(it, dict) and isinstance(it.get("category"), str) and it["category"].strip()
                and isinstance(it.get("frame_filename"), str)):
            bad += 1
            continue
        p = _resolve(it["frame_filename"], root)
        if not p.is_file():
            missing.append(str(p))
            continue
        labels.append(it["category"].strip())
        paths.append(p)
    if bad or missing:
        log.warning("%s: %d malformed records and %d missing frames skipped (e.g. %s)", path, bad,
                    len(missing), "; ".join(missing[:3]))
    if not paths:
        raise DataError(f"{path}: no usable evaluation images ({bad} malformed records, "
                        f"{len(missing)} missing frames, e.g. {'; '.join(missing[:3])}); "
                        "records need \"category\" and \"frame_filename\"")
    return EvalSet(labels, paths)


def _load_trials(items: list, path: Path, root: Path) -> EvalSet:
    index: dict[Path, int] = {}
    labels: list[str] = []
    paths: list[Path] = []
    trials: list[Trial] = []
    skipped: list[str] = []

    def idx(name: str, cat: str) -> int:
        p = _resolve(name, root)
        if p not in index:
            index[p] = len(paths)
            paths.append(p)
            labels.append(cat)
        return index[p]

    for i, it in enumerate(items):
        try:
            cats = [it["target_category"], *it["foil_categories"]]
            names = [it["target_img_filename"], *it["foil_img_filenames"]]
            if len(cats) != len(names) or not all(isinstance(x, str) for x in cats + names):
                raise TypeError("categories and file names must be matching lists of strings")
        except (KeyError, TypeError) as e:
            skipped.append(f"trial {i}: {e}")
            continue
        gone = [n for n in names if not _resolve(n, root).is_file()]
        if gone:
            skipped.append(f"trial {i}: missing {gone[0]}")
            continue
        trials.append(Trial(cats[0], tuple(idx(n, c) for n, c in zip(names, cats)), 0))
    if skipped:
        log.warning("%s: %d of %d trials skipped (e.g. %s)", path, len(skipped), len(items),
                    "; ".join(skipped[:3]))
    if not trials:
        raise DataError(f"{path}: none of the {len(items)} CVCL trials is usable "
                        f"(e.g. {'; '.join(skipped[:3])}); "
                        "check frames_root points at the folder holding the trial images")
    widths = {len(t.image_indices) for t in trials}
    if len(widths) != 1:
        raise DataError(f"{path}: trials have different numbers of images {sorted(widths)}; "
                        "one n-way per file")
    return EvalSet(labels, paths, trials)


def split_records(records: Sequence, fractions: tuple[float, float, float] = (0.9, 0.05, 0.05),
                  seed: int = 0) -> tuple[list, list, list]:
    """Shuffle (fixed per seed) and split by utterance, as CVCL does: train gets the remainder."""
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise DataError(f"split fractions must be three non-negative numbers summing to 1, got {fractions}")
    order = np.random.default_rng(seed).permutation(len(records))
    n_val = int(len(records) * fractions[1])
    n_test = int(len(records) * fractions[2])
    n_train = len(records) - n_val - n_test
    pick = [records[i] for i in order]
    return pick[:n_train], pick[n_train:n_train + n_val], pick[n_train + n_val:]


def load_frame(path: str | Path) -> np.ndarray:
    """uint8 RGB H x W x 3; DataError naming the file when it is missing or not an image."""
    try:
        from PIL import Image
    except ImportError as e:
        raise MissingExtraError("reading frames needs Pillow: pip install 'firstwords[train]'") from e
    p = Path(path)
    try:
        with Image.open(p) as im:
            arr = np.array(im.convert("RGB"), dtype=np.uint8)  # a writable copy (torch.from_numpy)
    except FileNotFoundError as e:
        raise DataError(f"{p}: frame file not found") from e
    except (OSError, ValueError, SyntaxError) as e:  # PIL's UnidentifiedImageError is an OSError
        raise DataError(f"{p}: cannot decode the frame as an image ({e}); delete or replace the file") from e
    return arr
