"""Many sessions into one memory: a child's recordings, replayed in time order, across cores or a Ray
cluster.

A session's order-free work — speech recognition and frame embeddings, pairing, and the encoder's word priors
— does not depend on the memory. `digest_session` runs the session through the ordinary learner (the same code
a single replay runs) with a `RecordingMemory` that keeps, in order, every moment the learner would have
taught. Digests are made in worker processes (or Ray tasks) and the driver applies them to the real memory in
the sessions' time order, moment by moment, each moment in one transaction together with its session's
entry in the memory's ledger (how many of its moments are in). So:
- the memory equals the one a sequential replay of the same sessions builds: the memory's own state, and thus
  re-entrance, is only ever consulted on the driver, in order, one moment at a time as the learner does it
  (one transaction for a whole session would learn each moment from the state at the session's start: the
  memory refreshes its derived statistics per transaction);
- an interrupted folder replay resumes where it stopped, and no moment is ever applied twice: the ledger key
  is the session's folder name plus a digest of its files' names, sizes and times, its value says how many
  of the session's moments are in; a session cut short is digested again (the digest is deterministic)
  and goes on from there.

Ray is optional (`pip install 'firstwords[scale]'`); `ray_address="auto"` joins a running cluster, "local"
starts one on this machine. Ray's usage statistics are switched off before it starts.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
from firstwords.edge.errors import DataError, InputError, MissingExtraError

log = logging.getLogger(__name__)

LEDGER_PREFIX = "session:"  # the memory's ledger keys of applied sessions
SCALE_HINT = "pip install 'firstwords[scale]' (Ray) to replay on a cluster"


@dataclass
class RecordedMoment:
    """What the learner would have taught the memory at one utterance (the arguments of memory.learn)."""

    words: list[Any]  # str or HeardWord
    frame_embeddings: np.ndarray
    t: float
    text: str
    prior: dict[str, np.ndarray] | None = None
    media: bytes | None = None


class RecordingMemory:
    """Stands where the memory stands in a learner, and records instead of learning."""

    def __init__(self) -> None:
        self.moments: list[RecordedMoment] = []

    def learn(self, words: Sequence[Any], frame_embeddings: np.ndarray, t: float, utterance_text: str,
              prior: dict[str, np.ndarray] | None = None, *, media: bytes | None = None) -> None:
        self.moments.append(RecordedMoment(list(words), np.array(frame_embeddings, np.float32, copy=True),
                                           float(t), utterance_text, dict(prior) if prior else None, media))

    def close(self) -> None:
        pass


@dataclass
class SessionDigest:
    key: str  # the ledger key: folder name + a digest of its files
    name: str
    moments: list[RecordedMoment]
    media_seconds: float  # the session's length
    stats: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DigestJob:
    """Everything a worker needs to digest one session (picklable)."""

    session: str
    key: str
    config: str  # device config name or path
    bundle: str
    words_from: str = "auto"
    threads: int = 1
    keep_media: bool = False
    recognizer: str | None = None  # instead of the config's [audio] recognizer (e.g. "whisper" on a laptop)
    adaptation: str | None = None  # the home's speaker adaptation (edge.asr_adapt), beside the memory


def session_key(folder: Path) -> str:
    """The folder's name and a digest of its files' names, sizes and modification times."""
    h = hashlib.sha256()
    for p in sorted(q for q in folder.rglob("*") if q.is_file()):
        st = p.stat()
        h.update(f"{p.relative_to(folder)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return f"{folder.name}@{h.hexdigest()[:16]}"


def _session_start(folder: Path) -> tuple[float, str]:
    """Sort key: session.json's recorded start time (seconds since the epoch) when given, then the name."""
    meta = folder / "session.json"
    if meta.is_file():
        try:
            start = json.loads(meta.read_text()).get("start_time")
            if isinstance(start, (int, float)):
                return float(start), folder.name
        except (OSError, ValueError):
            pass
    return float("inf"), folder.name


def find_sessions(folder: str | Path) -> list[Path]:
    """The session folders directly inside `folder`, in time order (session.json's start_time, else name)."""
    root = Path(folder)
    if not root.is_dir():
        raise DataError(f"{root}: not a folder of sessions")
    subs = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    if not subs:
        raise DataError(f"{root}: no session folders inside (one folder per recorded session)")
    return sorted(subs, key=_session_start)


def is_session_folder_of_folders(path: str | Path) -> bool:
    """True for a folder whose subfolders are sessions (and that is not itself a session)."""
    p = Path(path)
    if not p.is_dir() or (p / "session.json").exists():
        return False
    return any(q.is_dir() and (q / "session.json").exists() for q in p.iterdir())


def digest_session(job: DigestJob) -> SessionDigest:
    """Replay one session through the learner into a RecordingMemory (runs in a worker)."""
    from firstwords.edge.encode import Encoder
    from firstwords.edge.replay import choose_words_source, discover_session, replay, session_duration
    from firstwords.edge.runtime import bundle_vocabulary, load_config, make_speech, options_from_config

    cfg = load_config(job.config)
    session = discover_session(job.session)
    duration = session_duration(session) or 0.0
    name = job.recognizer or cfg.audio.recognizer
    name = name if name != "transcript" else "pocketsphinx"
    source = choose_words_source(session, job.words_from, name)
    encoder = Encoder(job.bundle, threads=job.threads)
    try:
        vad = rec = None
        if source == "audio":
            vad, rec = make_speech(cfg.audio.vad, bundle_vocabulary(encoder), recognizer=name,
                                   bundle=encoder.bundle, adaptation=job.adaptation)
        memory = RecordingMemory()
        options = options_from_config(cfg, realtime=False)
        report = replay(session, encoder, memory, words_from=source, speed=None, options=options, vad=vad,
                        recognizer=rec, recognizer_name=name, install_signal_handlers=False)
    finally:
        encoder.bundle.close()
    if report.errors:
        raise DataError(f"{job.session}: {report.errors[0]}")
    return SessionDigest(job.key, Path(job.session).name, memory.moments, duration, dict(report.stats))


def _ledger_entry(digest: SessionDigest, applied: int) -> dict[str, str]:
    return {LEDGER_PREFIX + digest.key: json.dumps({"name": digest.name, "moments": len(digest.moments),
                                                    "applied": applied,
                                                    "media_seconds": round(digest.media_seconds, 3)})}


def _applied_count(value: str) -> tuple[int, int]:
    """(moments applied, moments in the session) from a ledger value."""
    try:
        v = json.loads(value)
        total = int(v["moments"])
        return int(v.get("applied", total)), total
    except (ValueError, KeyError, TypeError) as e:
        raise DataError(f"the memory's ledger entry {value!r} is not one firstwords wrote; the memory "
                        "file may be damaged") from e


def _apply(memory: Any, digest: SessionDigest, start: int = 0) -> int:
    """The session's moments from `start` on, each in one transaction with the ledger's count of moments in.
    Returns the moments the memory refused (bad input: skipped and counted, as the learner does)."""
    from firstwords.edge.memory_moment import Moment

    if not digest.moments:
        memory.learn_batch([], ledger=_ledger_entry(digest, 0))
    refused = 0
    for i in range(start, len(digest.moments)):
        m = digest.moments[i]
        try:
            memory.learn_batch([Moment(m.words, m.frame_embeddings, m.t, m.text, m.prior, m.media)],
                               ledger=_ledger_entry(digest, i + 1))
        except InputError as e:
            refused += 1
            log.warning("session %s: the memory refused the utterance at %.1f s (%s); skipped",
                        digest.name, m.t, e)
    return refused


def _local_digests(jobs: list[DigestJob], workers: int) -> Iterator[SessionDigest]:
    """Digests in the jobs' order; `workers` sessions at a time in worker processes (1: in this process)."""
    if workers <= 1:
        for job in jobs:
            yield digest_session(job)
        return
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(digest_session, job) for job in jobs]
        try:
            for f in futures:
                yield f.result()
        finally:
            for f in futures:
                f.cancel()


def _ray_digests(jobs: list[DigestJob], address: str, workers: int) -> Iterator[SessionDigest]:
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"  # Ray reports usage to its makers unless told not to
    try:
        import ray
    except ImportError as e:
        raise MissingExtraError(f"--ray needs Ray: {SCALE_HINT}") from e
    started = not ray.is_initialized()
    if started:
        kw: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
        if address == "local":
            ray.init(num_cpus=workers, **kw)
        else:
            ray.init(address=address, **kw)
    try:
        remote = ray.remote(num_cpus=1)(digest_session)
        refs = [remote.remote(job) for job in jobs]
        for ref in refs:
            yield ray.get(ref)
    finally:
        if started:
            ray.shutdown()


@dataclass
class FolderReport:
    applied: list[str]  # session names applied now
    skipped: list[str]  # already in the memory's ledger
    moments: int  # moments applied now
    media_seconds: float
    refused: int = 0  # moments the memory refused (bad input), skipped
    stats: dict[str, dict[str, Any]] = field(default_factory=dict)


def replay_folder(folder: str | Path, config: str, bundle: str | Path, memory: Any, *, workers: int = 1,
                  ray_address: str | None = None, words_from: str = "auto", keep_media: bool = False,
                  recognizer: str | None = None,
                  on_applied: Callable[[SessionDigest], None] | None = None) -> FolderReport:
    """Replay every session in `folder` into `memory` (an open AssociativeMemory), in time order, skipping
    those its ledger says were applied. workers: sessions digested at once (processes, or Ray tasks);
    recognizer: hear the soundtracks with this registered recogniser instead of the config's."""
    if workers < 1:
        raise InputError(f"workers must be at least 1, got {workers}")
    from firstwords.edge.runtime import home_adaptation

    ledger = memory.ledger(LEDGER_PREFIX)
    adaptation = home_adaptation(getattr(memory, "path", None))  # the home's speaker adaptation, if any
    todo: list[DigestJob] = []
    skipped: list[str] = []
    start: dict[str, int] = {}  # moments of a session cut short that are in already
    for path in find_sessions(folder):
        key = session_key(path)
        if LEDGER_PREFIX + key in ledger:
            applied, total = _applied_count(ledger[LEDGER_PREFIX + key])
            if applied >= total:
                skipped.append(path.name)
                continue
            start[key] = applied
        todo.append(DigestJob(str(path), key, str(config), str(bundle), words_from, 1, keep_media,
                              recognizer, None if adaptation is None else str(adaptation)))
    digests = (_ray_digests(todo, ray_address, workers) if ray_address else _local_digests(todo, workers))
    report = FolderReport([], skipped, 0, 0.0)
    for digest in digests:
        first = start.get(digest.key, 0)
        report.refused += _apply(memory, digest, first)
        report.applied.append(digest.name)
        report.moments += len(digest.moments) - first
        report.media_seconds += digest.media_seconds
        report.stats[digest.name] = digest.stats
        log.info("applied session %s (%d moments)", digest.name, len(digest.moments))
        if on_applied is not None:
            on_applied(digest)
    return report
