"""Words from speech: the `Recognizer` interface, PocketSphinx (offline, English) and a registry by name.

A recognizer takes one utterance of float32 mono 16 kHz audio (a `SpeechSegment.audio`) and returns a
`Transcript`: the text and its words as `firstwords.edge.heard.HeardWord(text, start, end, confidence)`, times
in seconds from the start of the audio, confidence the recogniser's posterior in [0, 1]. Words are the
tokenizer's (`firstwords.edge.tokenize.words`): "that's" may become two HeardWords with one time
and confidence.

Words the best hypothesis missed are heard too: the open search also reads its 5 best hypotheses, and a word
standing in at least 2 of them joins the transcript's words with that share as its confidence
(edge.asr_nbest); the transcript's text stays the best hypothesis.

Hearing is honest: open vocabulary, the bundle's words favoured, never forced. `bias` chooses the search:
- "open":     (default) the bundle's speech language model and its dictionary (`speech_lm.bin`,
              `speech.dict`: pocketsphinx's general English model interpolated with a model of the training
              sentences, built at export time by firstwords.export.lm; manifest key `speech`). Without one (an
              older bundle, or no bundle given) the general English model and full dictionary alone, with a
              warning: honest but deaf to many object words until the bundle is re-exported;
- "lm":       closed vocabulary: a trigram LM of `sentences` restricted to `vocabulary`. Puts vocabulary words
              on any speech (measured: 6.8 object false alarms per minute of speech that names nothing); kept
              for comparison in tools/bench_hearing.py, never for learning;
- "grammar":  a JSGF loop over the vocabulary (closed, slow beyond a few dozen words);
- "keywords": keyword spotting of the given words; words may overlap, sorted by time.
Measured by tools/bench_hearing.py on six voices: see docs/CONTRACTS.md.

Adding another recognizer (vosk, sherpa-onnx, whisper.cpp ...) with your own model: write a class with
`name` and `transcribe(audio) -> Transcript`, then either call `register_recognizer("vosk", VoskRecognizer)`
before building the learner, or expose it from your package under the entry-point group
`firstwords.recognizers` (e.g. `vosk = "mypkg.asr:VoskRecognizer"`); `make_recognizer("vosk", model=...)`
then finds it. Keep the model on disk (no downloads at run time).
"""

from __future__ import annotations

import itertools
import logging
import re
import tempfile
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from firstwords.edge.asr_nbest import N_BEST, nbest_words
from firstwords.edge.asr_warp import MAX_WARP, utterance_warp
from firstwords.edge.errors import DataError, InputError, MissingExtraError
from firstwords.edge.hear import SAMPLE_RATE, check_audio
from firstwords.edge.heard import HeardWord
from firstwords.edge.tokenize import words as tokenize_words

log = logging.getLogger(__name__)

SPEECH_HINT = "pip install 'firstwords[speech]' (pocketsphinx 5.x bundles an offline English model)"
ENTRY_POINT_GROUP = "firstwords.recognizers"
_WORD = re.compile(r"^[a-z][a-z']*$")  # what goes into a grammar / keyword list
_FILLERS = {"<s>", "</s>", "<sil>", "[NOISE]", "[SPEECH]", "<unk>"}


@dataclass(frozen=True)
class Transcript:
    text: str  # the best hypothesis
    # its words, and the words of competing hypotheses (edge.asr_nbest), each with its confidence; times from
    # the start of the utterance audio; words may overlap
    words: tuple[HeardWord, ...] = field(default_factory=tuple)
    confidence: float = 0.0  # mean confidence of the best hypothesis' words, 0 when nothing was recognised

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
_MIN_PCM_BYTES = 2 * SAMPLE_RATE // 10  # 100 ms of 16-bit samples: shorter audio is not decoded


class PocketSphinxRecognizer:
    """Offline English recognition with the acoustic model and dictionary of the pocketsphinx wheel.

    bias: "open" (default) | "lm" | "grammar" | "keywords" (see the module doc).
    bundle: a loaded bundle (edge.bundle.Bundle) whose manifest's `speech` entry names its language model;
      lm: the same as a path (an ARPA or pocketsphinx binary model). With neither, "open" uses the general
      English model and warns.
    vocabulary / sentences: the words and text the closed searches ("lm", "grammar", "keywords") are built
      from; words missing from the pronouncing dictionary are dropped (listed in `.unknown_words`).
    kws_threshold: keyword-spotting threshold (smaller = more detections, more false alarms).
    model_dir / dictionary: override the acoustic model directory and the pronouncing dictionary.
    decoder_options: more pocketsphinx settings (e.g. {"lw": 9.0}, the language model's weight).
    n_best: hypotheses whose words are heard too, each with its share of them as confidence
      (edge.asr_nbest; open search only; 0 or 1: the best path alone).
    max_warp: vocal tract length normalisation: each utterance's frequency warp is chosen from its pitch,
      up to this (edge.asr_warp); 1.0: none. A `warp_params` in decoder_options fixes one warp instead.
    adaptation: a speaker adaptation of the acoustic model (edge.asr_adapt: a home's voices), or None.
    """

    name = "pocketsphinx"
    BIASES = ("open", "none", "grammar", "keywords", "lm")  # "none": the old name of "open" without an LM

    def __init__(self, vocabulary: Iterable[str] | None = None, bias: str | None = None,
                 sentences: Iterable[str] | None = None, kws_threshold: float = 1e-10,
                 model_dir: str | Path | None = None, dictionary: str | Path | None = None,
                 lm: str | Path | None = None, bundle: Any = None, decoder_options: dict | None = None,
                 n_best: int = N_BEST, max_warp: float = MAX_WARP, adaptation: str | Path | None = None):
        ps = _import_pocketsphinx()
        vocab_list = sorted({w.strip().lower() for w in (vocabulary or []) if w and w.strip()})
        vocab_list = [w for w in vocab_list if not (w.startswith("<") and w.endswith(">"))]  # CVCL specials
        sentences = [s for s in (sentences or []) if isinstance(s, str)]
        bias = "open" if bias in (None, "none") else bias
        if bias not in self.BIASES:
            raise InputError(f"unknown recognition bias {bias!r}; choose one of {self.BIASES}")
        if bias == "lm" and not vocab_list:  # the sentences' words are the vocabulary
            vocab_list = sorted({w for s in sentences for w in _words(s)})
        if bias != "open" and not vocab_list:
            raise InputError(f"bias={bias!r} needs a vocabulary (e.g. the bundle's words)")
        defaults = ps.Config()
        paths = {"hmm": model_dir or defaults["hmm"], "dict": dictionary or defaults["dict"]}
        for key, val in paths.items():
            if not Path(val).exists():
                raise DataError(f"pocketsphinx {key} not found: {val}")
        self.bias = bias
        self.n_best = int(n_best) if bias == "open" else 0
        self.lm_source = "none"
        self.max_warp = 1.0 if (decoder_options or {}).get("warp_params") else float(max_warp)
        self._warp = 1.0  # the front end's current warp
        self._means: dict[float, str] = {}  # the cepstral mean last reached under each other warp
        self._lock = threading.Lock()  # a decoder is not safe to share between threads
        self.vocabulary: list[str] = []
        self.unknown_words: list[str] = []
        self._tmp = tempfile.TemporaryDirectory(prefix="firstwords-asr-")
        tmp = Path(self._tmp.name)
        kw: dict = {"loglevel": "FATAL", "hmm": str(paths["hmm"]), "dict": str(paths["dict"]),
                    "bestpath": True,  # bestpath: a lattice, so that every word gets a posterior
                    # An explicit neutral warp, never none: pocketsphinx keeps the warp's parameters in
                    # process-wide state, and a decoder without warp_params marks them neutral for every
                    # later decoder whose warp string equals the last one parsed (a switch to 1.2 then did
                    # not warp, depending on which decoders the process had built before).
                    "warp_params": "1"}
        if bias == "open":
            kw["lm"], bundle_dict, self.lm_source = _open_lm(bundle, lm, defaults["lm"])
            if bundle_dict and not dictionary:
                kw["dict"] = bundle_dict
        else:
            # A dictionary of just the vocabulary: loads in milliseconds instead of ~0.5 s (134k words) and
            # keeps every search inside the vocabulary.
            entries = _dictionary_entries(Path(paths["dict"]), set(vocab_list))
            self.vocabulary = [w for w in vocab_list if w in entries and _WORD.match(w)]
            self.unknown_words = [w for w in vocab_list if w not in self.vocabulary]
            if not self.vocabulary:
                raise InputError("none of the vocabulary words are in pocketsphinx's dictionary; "
                                 "use bias='open' or add pronunciations to a dictionary file "
                                 "(dictionary=...)")
            (tmp / "vocab.dict").write_text("".join(line for w in self.vocabulary for line in entries[w]))
            kw["dict"] = str(tmp / "vocab.dict")
            if bias == "lm":
                kw["lm"] = str(self._write_lm(tmp / "vocab.arpa", sentences))
                self.lm_source = "closed vocabulary"
            elif bias == "grammar":
                if len(self.vocabulary) > 40:
                    log.warning("pocketsphinx: a grammar over %d words decodes slowly (many times real time "
                                "here)", len(self.vocabulary))
                alts = " | ".join(self.vocabulary)
                (tmp / "vocab.gram").write_text(f"#JSGF V1.0;\ngrammar vocab;\n"
                                                f"public <utt> = ( {alts} )+ ;\n")
                kw["jsgf"] = str(tmp / "vocab.gram")
            else:
                (tmp / "vocab.kws").write_text("".join(f"{w} /{kws_threshold:g}/\n" for w in self.vocabulary))
                kw["kws"] = str(tmp / "vocab.kws")
        self.adaptation = None
        if adaptation is not None:
            from firstwords.edge.asr_adapt import decoder_setting

            key, kw[key] = decoder_setting(adaptation, kw["hmm"])
            self.adaptation = str(adaptation)
        kw.update(decoder_options or {})
        if self.unknown_words:
            log.warning("pocketsphinx: %d vocabulary words have no pronunciation and are ignored: %s",
                        len(self.unknown_words), ", ".join(self.unknown_words[:20]))
        try:
            self.decoder = ps.Decoder(**{k: v for k, v in kw.items() if v is not None})
        except Exception as e:  # pocketsphinx raises RuntimeError / ValueError on bad model files
            raise DataError(f"pocketsphinx cannot load its model or search ({e}); "
                            f"check model_dir / dictionary / lm, or reinstall: {SPEECH_HINT}") from e
        self._add_cmn_search()

    @classmethod
    def cmn_tracker(cls, *, model_dir: str | Path | None = None, dictionary: str | Path | None = None,
                    decoder_options: dict | None = None, max_warp: float = MAX_WARP,
                    **search: Any) -> PocketSphinxRecognizer:
        """A recogniser with the front end these settings give (acoustic model, feature settings, warp) and no
        language model, for edge.asr_pool to follow the cepstral mean with: the mean does not depend on the
        search (advance_cmn's means are the same, number for number: tested) and a tracker needs none of the
        bundle's language model (~75 MB). `search`: the settings of the search (bundle, lm, bias, vocabulary,
        sentences, n_best...), ignored."""
        options = {k: v for k, v in (decoder_options or {}).items() if k not in _SEARCH_OPTIONS}
        return cls(vocabulary=["a"], bias="grammar", model_dir=model_dir, dictionary=dictionary,
                   decoder_options=options or None, max_warp=max_warp)

    def _add_cmn_search(self) -> None:
        """A second search, a grammar of one word, that advance_cmn switches to: ending an utterance searches
        every frame fed to it, and the front end's mean does not depend on the search, so the cheapest search
        gives the mean the real one would have (the same numbers: tested) at a small fraction of its cost."""
        word = next((w for w in ("a", *self.vocabulary) if self.decoder.lookup_word(w)), None)
        if word is None:  # a dictionary without "a" or any vocabulary word: advance_cmn searches for real
            self._cmn_search = None
            return
        self._cmn_search = "_cmn"
        self.decoder.add_jsgf_string(self._cmn_search, f"#JSGF V1.0;\ngrammar cmn;\npublic <s> = {word} ;\n")

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

    def _use_warp(self, audio: np.ndarray) -> None:
        """Switch the front end to this utterance's warp (edge.asr_warp) and to the cepstral mean last reached
        under that warp (a new warp starts from the current mean)."""
        if self.max_warp <= 1.0:
            return
        warp = utterance_warp(audio, self.max_warp)
        if warp == self._warp:
            return
        self._means[self._warp] = self.decoder.get_cmn()
        self.decoder.config["warp_params"] = f"{warp:g}"
        self._set_cmn(self._means.get(warp, self._means[self._warp]))
        self._warp = warp

    def _set_cmn(self, cmn: str) -> None:
        """The front end reset (feature buffers, the mean's running sums), then the mean given as text: every
        decoder handed the same text is in the same state."""
        self.decoder.reinit_feat()
        self.decoder.set_cmn(cmn)

    def advance_cmn(self, audio: np.ndarray) -> str:
        """The cepstral mean before this utterance, then the utterance's features (searched by a one-word
        grammar only: a few per cent of decoding), so the mean adapts as decoding it would have adapted it. A
        pool of decoders hears what one decoder hears in sequence when each is given, with its utterance, the
        mean this returned (edge.asr_pool): the mean carries over from utterance to utterance (a decoder reset
        per utterance recovered about half as many object words on the sample voice)."""
        pcm = _to_pcm16(audio)
        decoded = len(pcm) >= _MIN_PCM_BYTES  # as transcribe
        with self._lock:
            if decoded:
                self._use_warp(audio)  # the features and mean as transcribe will have them
            cmn = self.decoder.get_cmn()
            if decoded:
                if self._cmn_search:
                    self.decoder.activate_search(self._cmn_search)
                try:
                    self.decoder.start_utt()
                    self.decoder.process_raw(pcm, no_search=True, full_utt=False)
                    self.decoder.end_utt()  # searches the frames fed (see _add_cmn_search)
                finally:
                    if self._cmn_search:
                        self.decoder.activate_search()  # the decoder's own search again
            self._set_cmn(self.decoder.get_cmn())  # as a decoder handed the mean will be
        return cmn

    def transcribe(self, audio: np.ndarray, cmn: str | None = None) -> Transcript:
        """cmn: the cepstral mean to decode from (advance_cmn's); this decoder's own mean is left as it was.
        Default: the mean this decoder has come to (and decoding adapts it)."""
        pcm = _to_pcm16(audio)
        if len(pcm) < _MIN_PCM_BYTES:  # nothing to recognise
            return Transcript("")
        with self._lock:
            d = self.decoder
            kept = None
            self._use_warp(audio)
            if cmn is not None:
                kept = d.get_cmn()
                self._set_cmn(cmn)
            d.start_utt()
            # Feed in 0.2 s chunks, not the whole utterance at once: pocketsphinx holds the GIL while it
            # decodes, and one long call stalled other threads (the sound card's callback) for ~0.5 s.
            for i in range(0, len(pcm), _DECODE_CHUNK):
                d.process_raw(pcm[i:i + _DECODE_CHUNK], full_utt=False)
            d.end_utt()
            hyp = d.hyp()
            segs = [(s.word, s.start_frame, s.end_frame, s.prob) for s in d.seg()] if hyp is not None else []
            hyps = [h.hypstr for h in itertools.islice(d.nbest(), self.n_best)] \
                if hyp is not None and self.n_best > 1 else []
            if kept is not None:
                self._set_cmn(kept)
        best: list[HeardWord] = []
        for word, first, last, prob in segs:
            w = _plain(word)
            if not w:
                continue
            # 100 frames per second; seg.prob is the word's posterior in the lattice
            conf = float(np.clip(prob, 0.0, 1.0)) if np.isfinite(prob) else 0.0
            best.append(HeardWord(w, first / 100.0, (last + 1) / 100.0, conf))
        best.sort(key=lambda w: w.start)  # keyword spotting reports in detection order
        text = " ".join(t for w in best for t in tokenize_words(w.text))  # the best hypothesis
        rivals: list[HeardWord] = []
        if hyps:
            best, rivals = nbest_words(best, [[p for p in map(_plain, h.split()) if p] for h in hyps])
        conf = float(np.mean([w.confidence for w in best])) if best else 0.0
        words = sorted((HeardWord(t, w.start, w.end, w.confidence) for w in best + rivals
                        for t in tokenize_words(w.text)), key=lambda w: (w.start, w.end))
        return Transcript(text, tuple(words), conf)


# decoder settings that choose the search, not the front end (PocketSphinxRecognizer.cmn_tracker drops them)
_SEARCH_OPTIONS = frozenset({"lm", "lmctl", "lmname", "dict", "fdict", "jsgf", "fsg", "kws", "keyphrase",
                             "allphone"})


def _plain(word: str) -> str:
    """A decoder word as text: "the(2)" (an alternative pronunciation) -> "the"; fillers -> ""."""
    w = re.sub(r"\(\d+\)$", "", word.strip())
    return "" if not w or w in _FILLERS or w.startswith("[") else w


def bundle_dictionary(bundle: Any) -> str | None:
    """The pronouncing dictionary of the bundle's speech model (the words it can say), or None when the bundle
    has none (the general dictionary then)."""
    speech = (getattr(bundle, "manifest", None) or {}).get("speech") if bundle is not None else None
    if not (isinstance(speech, dict) and speech.get("dict")):
        return None
    path = Path(bundle.path) / str(speech["dict"])
    if not path.is_file():
        raise DataError(f"the bundle's speech model file {path} is missing; re-export the bundle")
    return str(path)


def _open_lm(bundle: Any, lm: str | Path | None, general: str) -> tuple[str, str | None, str]:
    """(language model, dictionary or None, where they came from) of the open search: the bundle's, a given
    file, or the general English model (with a warning)."""
    if lm is not None:
        if not Path(lm).is_file():
            raise DataError(f"speech language model not found: {lm}")
        return str(lm), None, str(lm)
    speech = (getattr(bundle, "manifest", None) or {}).get("speech") if bundle is not None else None
    if isinstance(speech, dict) and speech.get("lm"):
        path = Path(bundle.path) / str(speech["lm"])
        if not path.is_file():
            raise DataError(f"the bundle's speech model file {path} is missing; re-export the bundle")
        source = (f"bundle ({speech.get('kind', 'interpolated')}, "
                  f"domain weight {speech.get('domain_weight', '?')})")
        return str(path), bundle_dictionary(bundle), source
    log.warning("the bundle has no speech language model (exported before it was added): hearing with "
                "the general English model only, which misses many object words — re-export the bundle "
                "(firstwords export) to favour its words")
    return general, None, "general English model (fallback)"


# ----------------------------------------------------------------------------------------------- registry

def _whisper(**kwargs: Any) -> Recognizer:
    """Whisper tiny.en through faster-whisper (edge.asr_whisper; optional, for replay on a laptop), imported
    only when one is built."""
    from firstwords.edge.asr_whisper import WhisperRecognizer

    return WhisperRecognizer(**kwargs)


RECOGNIZERS: dict[str, Callable[..., Recognizer]] = {"pocketsphinx": PocketSphinxRecognizer,
                                                     "whisper": _whisper}


def register_recognizer(name: str, factory: Callable[..., Recognizer]) -> None:
    """Make `make_recognizer(name, ...)` build `factory(...)`; a later registration replaces an
    earlier one."""
    RECOGNIZERS[name] = factory


def _from_entry_points(name: str) -> Callable[..., Recognizer] | None:
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            return ep.load()
    return None


def make_cmn_tracker(name: str = "pocketsphinx", **kwargs: Any) -> Recognizer:
    """What edge.asr_pool follows a recogniser's adaptation with, in order: its class's light `cmn_tracker`
    when it has one (the front end without the search), else the recogniser itself."""
    factory = RECOGNIZERS.get(name) or _from_entry_points(name)
    light = getattr(factory, "cmn_tracker", None)
    return light(**kwargs) if light is not None else make_recognizer(name, **kwargs)


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
