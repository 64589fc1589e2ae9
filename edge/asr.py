"""Words from speech: a small `Recognizer` interface, PocketSphinx (offline, English) and a registry by name.

A recognizer takes one utterance of float32 mono 16 kHz audio (a `SpeechSegment.audio`) and returns a
`Transcript`: the text, the words with times (seconds from the start of the audio) and confidences in [0, 1].

PocketSphinx (PyPI `pocketsphinx` 5.x) ships an English acoustic model, a general language model and CMUdict in
its wheel. Open-vocabulary decoding of a synthetic or child-directed voice is poor; biasing to the words the
learner cares about helps a lot, so `bias` chooses the search:
- "none":     the bundled general English LM (open vocabulary);
- "lm":       (default when a vocabulary is given) a trigram LM built from `sentences` (e.g. the training
              utterances) restricted to the vocabulary, or unigrams of the vocabulary when no sentences;
- "grammar":  a JSGF grammar accepting any sequence of the vocabulary words (slow with more than a few dozen
              words: the loop has no word probabilities to prune with);
- "keywords": keyword spotting of each vocabulary word — pass the object words only (short function words
              are spotted everywhere); words may overlap, sorted by time.
Measured by tools/bench_hearing.py on espeak-ng speech (30 phrases of the sample corpus): see docs/CONTRACTS.md.

Adding another recognizer (vosk, sherpa-onnx, whisper.cpp ...) with your own model: write a class with
`name` and `transcribe(audio) -> Transcript`, then either call `register_recognizer("vosk", VoskRecognizer)`
before building the learner, or expose it from your package under the entry-point group
`firstwords.recognizers` (e.g. `vosk = "mypkg.asr:VoskRecognizer"`); `make_recognizer("vosk", model=...)`
then finds it. Keep the model on disk (no downloads at run time).
"""

from __future__ import annotations

import logging
import re
import tempfile
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
from firstwords.edge.errors import DataError, InputError, MissingExtraError
from firstwords.edge.hear import SAMPLE_RATE, check_audio

log = logging.getLogger(__name__)

SPEECH_HINT = "pip install 'firstwords[speech]' (pocketsphinx 5.x bundles an offline English model)"
ENTRY_POINT_GROUP = "firstwords.recognizers"
_WORD = re.compile(r"^[a-z][a-z']*$")  # what goes into a grammar / keyword list
_FILLERS = {"<s>", "</s>", "<sil>", "[NOISE]", "[SPEECH]", "<unk>"}


@dataclass(frozen=True)
class Word:
    text: str
    start: float  # seconds from the start of the utterance audio
    end: float
    confidence: float  # [0, 1]


@dataclass(frozen=True)
class Transcript:
    text: str
    words: tuple[Word, ...] = field(default_factory=tuple)
    confidence: float = 0.0  # mean word confidence, 0 when nothing was recognised

    @property
    def tokens(self) -> list[str]:
        return [w.text for w in self.words]


class Recognizer(Protocol):
    name: str

    def transcribe(self, audio: np.ndarray) -> Transcript: ...


DITHER = 3e-4  # ~10 LSB of 16-bit noise (-70 dBFS): digital silence (exact zeros, as from a TTS or a muted
# mic) wrecks pocketsphinx's log-energy features and cepstral mean; measured here: 2/6 -> 6/6 phrases right.


def _to_pcm16(audio: np.ndarray) -> bytes:
    a = check_audio(audio, "recognizer input")
    noise = np.random.default_rng(len(a)).standard_normal(len(a)).astype(np.float32) * DITHER  # deterministic
    return (np.clip(a + noise, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()


def _words(text: str) -> list[str]:
    return re.sub(r"[^\w\s']+", " ", text.lower()).split()


def _dictionary_entries(path: Path, wanted: set[str]) -> dict[str, list[str]]:
    """Lines of a CMUdict-format file for the wanted words, alternative pronunciations ("the(2)") included."""
    entries: dict[str, list[str]] = {}
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                head = line.split(" ", 1)[0]
                word = re.sub(r"\(\d+\)$", "", head)
                if word in wanted:
                    entries.setdefault(word, []).append(line if line.endswith("\n") else line + "\n")
    except OSError as e:
        raise DataError(f"cannot read the pronouncing dictionary {path}: {e}") from e
    return entries


def _import_pocketsphinx():
    try:
        import pocketsphinx
    except ImportError as e:
        raise MissingExtraError(f"speech recognition needs pocketsphinx: {SPEECH_HINT}") from e
    return pocketsphinx


_DECODE_CHUNK = SAMPLE_RATE // 5  # samples: 0.2 s


class PocketSphinxRecognizer:
    """Offline English recognition with the model bundled in the pocketsphinx wheel.

    vocabulary: words to bias towards (e.g. a bundle's vocab.json keys); words missing from the pronouncing
      dictionary are dropped (listed in `.unknown_words`). Special tokens like <pad> are ignored.
    bias: "lm" | "grammar" | "keywords" | "none" (see module doc); default "lm" with a vocabulary, else "none".
    sentences: text for bias="lm" (one utterance per item).
    kws_threshold: keyword-spotting threshold (smaller = more detections, more false alarms).
    model_dir / dictionary / lm: override the bundled acoustic model directory, dictionary, LM file.
    """

    name = "pocketsphinx"
    BIASES = ("none", "grammar", "keywords", "lm")

    def __init__(self, vocabulary: Iterable[str] | None = None, bias: str | None = None,
                 sentences: Iterable[str] | None = None, kws_threshold: float = 1e-10,
                 model_dir: str | Path | None = None, dictionary: str | Path | None = None,
                 lm: str | Path | None = None):
        ps = _import_pocketsphinx()
        vocab_list = sorted({w.strip().lower() for w in (vocabulary or []) if w and w.strip()})
        vocab_list = [w for w in vocab_list if not (w.startswith("<") and w.endswith(">"))]  # CVCL specials
        sentences = [s for s in (sentences or []) if isinstance(s, str)]
        if bias is None:
            bias = "lm" if vocab_list or sentences else "none"
        if bias not in self.BIASES:
            raise InputError(f"unknown recognition bias {bias!r}; choose one of {self.BIASES}")
        if bias == "lm" and not vocab_list:  # the sentences' words are the vocabulary
            vocab_list = sorted({w for s in sentences for w in _words(s)})
        if bias != "none" and not vocab_list:
            raise InputError(f"bias={bias!r} needs a vocabulary (e.g. the bundle's words)")
        defaults = ps.Config()
        paths = {"hmm": model_dir or defaults["hmm"], "dict": dictionary or defaults["dict"],
                 "lm": lm or defaults["lm"]}
        for key, val in paths.items():
            if not Path(val).exists():
                raise DataError(f"pocketsphinx {key} not found: {val}")
        self.bias = bias
        self._lock = threading.Lock()  # a decoder is not safe to share between threads
        self.vocabulary: list[str] = []
        self.unknown_words: list[str] = []
        self._tmp = tempfile.TemporaryDirectory(prefix="firstwords-asr-")
        tmp = Path(self._tmp.name)
        kw: dict = {"loglevel": "FATAL", "hmm": str(paths["hmm"]), "dict": str(paths["dict"]),
                    "lm": str(paths["lm"])}
        if bias != "none":
            # A dictionary of just the vocabulary: loads in milliseconds instead of ~0.5 s (130k words), uses
            # little RAM on the device, and keeps every search inside the vocabulary.
            entries = _dictionary_entries(Path(paths["dict"]), set(vocab_list))
            self.vocabulary = [w for w in vocab_list if w in entries and _WORD.match(w)]
            self.unknown_words = [w for w in vocab_list if w not in self.vocabulary]
            if not self.vocabulary:
                raise InputError("none of the vocabulary words are in pocketsphinx's dictionary; use bias='none' "
                                 "or add pronunciations to a dictionary file (dictionary=...)")
            (tmp / "vocab.dict").write_text("".join(line for w in self.vocabulary for line in entries[w]))
            kw["dict"] = str(tmp / "vocab.dict")
            if bias == "lm":
                kw["lm"] = str(self._write_lm(tmp / "vocab.arpa", sentences))
            else:
                kw["lm"] = None
                if bias == "grammar":
                    if len(self.vocabulary) > 40:
                        log.warning("pocketsphinx: a grammar over %d words decodes slowly (many times real time "
                                    "here); bias='lm' is faster and more accurate", len(self.vocabulary))
                    alts = " | ".join(self.vocabulary)
                    (tmp / "vocab.gram").write_text(
                        f"#JSGF V1.0;\ngrammar vocab;\npublic <utt> = ( {alts} )+ ;\n")
                    kw["jsgf"] = str(tmp / "vocab.gram")
                else:
                    (tmp / "vocab.kws").write_text("".join(f"{w} /{kws_threshold:g}/\n" for w in self.vocabulary))
                    kw["kws"] = str(tmp / "vocab.kws")
        if self.unknown_words:
            log.warning("pocketsphinx: %d vocabulary words have no pronunciation and are ignored: %s",
                        len(self.unknown_words), ", ".join(self.unknown_words[:20]))
        try:
            self.decoder = ps.Decoder(**{k: v for k, v in kw.items() if v is not None})
        except Exception as e:  # pocketsphinx raises RuntimeError / ValueError on bad model files
            raise DataError(f"pocketsphinx cannot load its model or search ({e}); check model_dir / dictionary / "
                            f"lm, or reinstall: {SPEECH_HINT}") from e

    def _write_lm(self, path: Path, sentences: list[str]) -> Path:
        from pocketsphinx.lm import ArpaBoLM  # pure Python ARPA writer shipped with pocketsphinx

        allowed = set(self.vocabulary)
        lines = [" ".join(ws) for ws in ([w for w in _words(s) if w in allowed] for s in sentences) if ws]
        text = "\n".join(lines + sorted(allowed)) + "\n"  # every vocabulary word at least once
        model = ArpaBoLM(text=text, add_start=True)
        model.compute()
        with open(path, "w") as f:
            model.write(f)
        return path

    def _set_cmn(self, cmn: str) -> None:
        """The front end reset (feature buffers, the mean's running sums), then the mean given as text: every
        decoder handed the same text is in the same state."""
        self.decoder.reinit_feat()
        self.decoder.set_cmn(cmn)

    def advance_cmn(self, audio: np.ndarray) -> str:
        """The cepstral mean before this utterance, then the utterance's features only (no search), so the
        mean adapts as decoding it would have adapted it. A pool of decoders hears what one decoder hears in
        sequence when each is given, with its utterance, the mean this returned (edge.asr_pool): the mean
        carries over from utterance to utterance (a decoder reset per utterance recovered about half as many
        object words on the sample voice)."""
        pcm = _to_pcm16(audio)
        with self._lock:
            cmn = self.decoder.get_cmn()
            if len(pcm) >= 2 * SAMPLE_RATE // 10:  # as transcribe: shorter audio is not decoded
                self.decoder.start_utt()
                self.decoder.process_raw(pcm, no_search=True, full_utt=False)
                self.decoder.end_utt()
            self._set_cmn(self.decoder.get_cmn())  # as a decoder handed the mean will be
        return cmn

    def transcribe(self, audio: np.ndarray, cmn: str | None = None) -> Transcript:
        """cmn: the cepstral mean to decode from (advance_cmn's); this decoder's own mean is left as it was.
        Default: the mean this decoder has come to (and decoding adapts it)."""
        pcm = _to_pcm16(audio)
        if len(pcm) < 2 * SAMPLE_RATE // 10:  # < 100 ms: nothing to recognise
            return Transcript("")
        with self._lock:
            d = self.decoder
            kept = None
            if cmn is not None:
                kept = d.get_cmn()
                self._set_cmn(cmn)
            d.start_utt()
            # Feed in 0.2 s chunks, not the whole utterance at once: pocketsphinx holds the GIL while it
            # decodes, and one long call stalled other threads (the sound card's callback) for ~0.5 s.
            # Chunked decoding gave the same word recovery on the sample session, longest stall ~0.13 s.
            for i in range(0, len(pcm), _DECODE_CHUNK):
                d.process_raw(pcm[i:i + _DECODE_CHUNK], full_utt=False)
            d.end_utt()
            hyp = d.hyp()
            segs = list(d.seg()) if hyp is not None else []
            if kept is not None:
                self._set_cmn(kept)
        words = []
        for s in segs:
            w = s.word.strip()
            w = re.sub(r"\(\d+\)$", "", w)  # alternative pronunciations: "the(2)" -> "the"
            if not w or w in _FILLERS or w.startswith("["):
                continue
            # 100 frames per second; pocketsphinx gives a posterior in [0, 1] as seg.prob
            conf = float(np.clip(s.prob, 0.0, 1.0)) if np.isfinite(s.prob) else 0.0
            words.append(Word(w, s.start_frame / 100.0, (s.end_frame + 1) / 100.0, conf))
        words.sort(key=lambda w: w.start)  # keyword spotting reports in detection order
        conf = float(np.mean([w.confidence for w in words])) if words else 0.0
        return Transcript(" ".join(w.text for w in words), tuple(words), conf)


# ----------------------------------------------------------------------------------------------- registry

RECOGNIZERS: dict[str, Callable[..., Recognizer]] = {"pocketsphinx": PocketSphinxRecognizer}


def register_recognizer(name: str, factory: Callable[..., Recognizer]) -> None:
    """Make `make_recognizer(name, ...)` build `factory(...)`; a later registration replaces an earlier one."""
    RECOGNIZERS[name] = factory


def _from_entry_points(name: str) -> Callable[..., Recognizer] | None:
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            return ep.load()
    return None


def available_recognizers() -> list[str]:
    from importlib.metadata import entry_points

    return sorted(set(RECOGNIZERS) | {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)})


def make_recognizer(name: str = "pocketsphinx", **kwargs) -> Recognizer:
    """Build a recognizer by name: built-in, registered, or from the `firstwords.recognizers` entry points."""
    factory = RECOGNIZERS.get(name) or _from_entry_points(name)
    if factory is None:
        raise InputError(f"unknown recognizer {name!r}; available: {available_recognizers()}. Add one with "
                         "firstwords.edge.asr.register_recognizer or a 'firstwords.recognizers' entry point")
    return factory(**kwargs)
