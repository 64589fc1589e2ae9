"""Speaker adaptation: pocketsphinx's acoustic model fitted to the voices of one home, from what it heard.

The acoustic model was trained on read news; a home's voices differ. From utterances heard before and the
recogniser's own best hypotheses of them (unsupervised: no transcript needed), the model's Gaussian means are
re-estimated for that home by MAP (maximum a posteriori): each mean moves towards the home's speech in
proportion to how much of it the mean explained (`MAP_TAU` = 10: ten frames move a mean halfway), so means
the home's speech never reached stay as trained. The recogniser then hears through the adapted means
(`PocketSphinxRecognizer(adaptation=path)`). method="mllr" instead estimates one global linear transform of
all the means (MLLR), kept for comparison: measured with tools/bench_hearing.py (six voices, adapted on one
draw of clips, tested on another draw) object recall 0.81 unadapted, 0.86 with MLLR, 0.90 with MAP, off-topic
word error 0.27, 0.26, 0.18; on a second draw 0.77, 0.80, 0.88, and MLLR let in two object false alarms in
off-topic speech where MAP and the unadapted model let in none.

The estimation runs CMU Sphinx's own trainer programs, Debian packages (tools/install_system_deps.sh):
sphinx_fe (sphinxbase-utils) computes the features with the model's front end and each utterance's frequency
warp (edge.asr_warp); bw (sphinxtrain) aligns them to the hypotheses and gathers the Gaussians' statistics;
map_adapt (or mllr_solve) re-estimates: ~5 s for 8 minutes of speech here. bw reads a text model definition
and float mixture weights, which pocketsphinx's wheel ships in binary (mdef) and 8-bit (sendump) form:
`training_model` converts them (pocketsphinx_mdef_convert from Debian's pocketsphinx, `read_sendump`).

The words said can also come from a script the home's speakers read (edge.asr_enrol, `firstwords enrol`):
then a word the recogniser always mishears for one voice is learned rather than kept misheard, and recognition
gains more (measured there). A home's adaptation lives beside its memory (`adaptation_path`): `firstwords
adapt` writes it, and the runtime hears through it whenever it is there.
"""

from __future__ import annotations

import logging
import re
import shutil
import struct
import subprocess
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from firstwords.edge.asr import _to_pcm16  # the samples the recogniser decodes
from firstwords.edge.asr_warp import utterance_warp
from firstwords.edge.atomic import atomic_write_bytes
from firstwords.edge.errors import DataError, InputError, MissingExtraError

log = logging.getLogger(__name__)

SYSTEM_HINT = ("apt-get install sphinxtrain sphinxbase-utils pocketsphinx (Debian packages; "
               "tools/install_system_deps.sh installs them)")
SPHINXTRAIN_DIRS = ("/usr/lib/sphinxtrain", "/usr/local/lib/sphinxtrain", "/usr/libexec/sphinxtrain")
MIN_SPEECH_S = 30.0  # less speech than this is too little to adapt from
MAP_TAU = 10.0  # MAP's prior weight in frames (measured: 10 and 30 recall alike; 10 the lower word error)
METHODS = ("map", "mllr")
LOG_BASE, SENDUMP_SHIFT = 1.0001, 10  # sendump: -log base 1.0001 of each weight, shifted right by 10 bits
# feat.params keys that are sphinx_fe's (the front end); the rest (-feat, -svspec, -cmn, -agc...) are bw's
_FE_KEYS = {"-lowerf", "-upperf", "-nfilt", "-transform", "-lifter", "-remove_noise", "-nfft", "-wlen",
            "-frate", "-alpha", "-dither", "-samprate"}
AUDIO_SUFFIXES = (".wav", ".flac")  # recordings adapt_home takes as they are
_MODEL_FILES = ("means", "variances", "transition_matrices", "noisedict")


@dataclass(frozen=True)
class HeardUtterance:
    """What adaptation learns from: 16 kHz audio, the words said in it (a hypothesis or a transcript) and the
    frequency warp the recogniser hears it with."""

    audio: np.ndarray
    text: str
    warp: float = 1.0
    words: tuple = ()  # the transcript's HeardWords (edge.heard), times from the utterance's start


def adaptation_path(memory: str | Path) -> Path:
    """Where a home's adaptation lives, beside its memory file: work/memory.db -> work/memory.speech.adapt."""
    p = Path(memory)
    return p.with_name(p.stem + ".speech.adapt")


def decoder_setting(path: str | Path, model_dir: str | Path) -> tuple[str, str]:
    """The pocketsphinx setting an adaptation file is loaded with: ("mean", path) for MAP's adapted means (an
    s3 file the size of the model's own), ("mllr", path) for an MLLR transform; DataError otherwise."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"speaker adaptation file not found: {p} (firstwords adapt writes it)")
    with open(p, "rb") as f:
        head = f.read(3)
    if head == b"s3\n":
        if p.stat().st_size != (Path(model_dir) / "means").stat().st_size:
            raise DataError(f"{p} was adapted from another acoustic model; run firstwords adapt again")
        return "mean", str(p)
    first = head.split(b"\n")[0].strip()
    if first.isdigit():  # an MLLR file starts with its number of classes
        return "mllr", str(p)
    raise DataError(f"{p} is not a speaker adaptation (adapted means or an MLLR transform); run firstwords "
                    "adapt again")


def find_tools() -> dict[str, str]:
    """The programs estimation runs, or MissingExtraError naming the packages to install."""
    found = {name: shutil.which(name) for name in ("sphinx_fe", "pocketsphinx_mdef_convert")}
    for name in ("bw", "map_adapt", "mllr_solve"):
        found[name] = shutil.which(name) or next(
            (str(Path(d) / name) for d in SPHINXTRAIN_DIRS if (Path(d) / name).is_file()), None)
    missing = sorted(k for k, v in found.items() if not v)
    if missing:
        raise MissingExtraError(f"speaker adaptation needs {', '.join(missing)}: {SYSTEM_HINT}")
    return {k: str(v) for k, v in found.items()}


def read_sendump(path: Path) -> np.ndarray:
    """pocketsphinx's 8-bit mixture weights as probabilities, [stream][codeword][senone]. The file: a header
    of length-prefixed strings ending with a zero length, int32 #codewords and #senones, then one byte per
    (stream, codeword, senone): -log base 1.0001 of the weight, shifted right by 10 bits (255: about zero)."""
    b = path.read_bytes()
    pos, attrs = 0, {}
    while True:
        (n,) = struct.unpack_from("<i", b, pos)
        pos += 4
        if n == 0:
            break
        key, _, value = b[pos:pos + n - 1].decode("ascii", "replace").partition(" ")
        attrs[key] = value
        pos += n
    if int(attrs.get("cluster_count", "0")) != 0:
        raise DataError(f"{path}: a clustered sendump; speaker adaptation reads unclustered ones only")
    n_streams = int(attrs.get("feature_count", "1"))
    n_codewords, n_senones = struct.unpack_from("<2i", b, pos)
    pos += 8
    if pos + n_streams * n_codewords * n_senones != len(b):
        raise DataError(f"{path}: not the size its header says; reinstall pocketsphinx")
    q = np.frombuffer(b, np.uint8, n_streams * n_codewords * n_senones, pos)
    w = np.exp(-(q.reshape(n_streams, n_codewords, n_senones).astype(np.float64) * (1 << SENDUMP_SHIFT))
               * np.log(LOG_BASE))
    return w / w.sum(axis=1, keepdims=True)


def write_mixture_weights(path: Path, weights: np.ndarray) -> None:
    """sphinxtrain's float mixture weights: "s3" header, byte-order word, dims [senone][stream][codeword],
    the count, then the weights (no checksum: the header does not announce one)."""
    mixw = np.ascontiguousarray(weights.transpose(2, 0, 1), dtype="<f4")
    with open(path, "wb") as f:
        f.write(b"s3\nversion 1.0\nendhdr\n")
        f.write(struct.pack("<I", 0x11223344))
        f.write(struct.pack("<3i", *mixw.shape))
        f.write(struct.pack("<i", mixw.size))
        f.write(mixw.tobytes())


def feat_params(model_dir: Path) -> list[tuple[str, str]]:
    pairs = []
    for line in (model_dir / "feat.params").read_text().splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0].startswith("-"):
            pairs.append((parts[0], parts[1]))
    return pairs


def training_model(model_dir: Path, out: Path, tools: dict[str, str]) -> Path:
    """A copy of the acoustic model that bw reads: text mdef and float mixture weights."""
    out.mkdir(parents=True, exist_ok=True)
    for name in _MODEL_FILES:
        shutil.copy(model_dir / name, out / name)
    _run([tools["pocketsphinx_mdef_convert"], "-text", str(model_dir / "mdef"), str(out / "mdef.txt")],
         out / "log.txt")
    write_mixture_weights(out / "mixture_weights", read_sendump(model_dir / "sendump"))
    return out


def _run(cmd: list[str], log_file: Path) -> None:
    with open(log_file, "a", encoding="utf-8") as f:
        f.write("$ " + " ".join(cmd) + "\n")
        f.flush()
        done = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, check=False)
    if done.returncode:
        tail = log_file.read_text(encoding="utf-8", errors="replace").splitlines()[-5:]
        raise DataError(f"speaker adaptation: {Path(cmd[0]).name} failed (exit {done.returncode}): "
                        + " | ".join(tail))


def _dictionary_words(path: Path) -> set[str]:
    with open(path, encoding="utf-8", errors="replace") as f:
        return {line.split(None, 1)[0] for line in f if line.strip()}


def adaptation_words(text: str) -> list[str]:
    """The words of a hypothesis or transcript as the pronouncing dictionary spells them: lower case,
    punctuation gone, the tokenizer's split clitics joined again ("where 's" -> "where's")."""
    text = re.sub(r"\s+'", "'", text.lower().replace("\u2019", "'"))
    return re.findall(r"[a-z][a-z']*", text)


def estimate_adaptation(heard: Iterable[HeardUtterance], out: str | Path, model_dir: str | Path | None = None,
                        dictionary: str | Path | None = None, method: str = "map",
                        tau: float = MAP_TAU) -> dict:
    """Adapt the acoustic model to `heard` and write the adaptation to `out` (whole or not at all): MAP's
    adapted means, or (method "mllr") a transform. Utterances with no words, or a word the dictionary lacks,
    are left out. `heard` is read once, after the programs and model are checked: a generator that hears
    as it goes fails before any listening, and its audio goes to disk one utterance at a time. Returns what
    went in and how long it took."""
    from pocketsphinx import Config

    if method not in METHODS:
        raise InputError(f"unknown adaptation method {method!r}; choose one of {METHODS}")
    tools = find_tools()
    defaults = Config()
    model = Path(model_dir or defaults["hmm"])
    dict_path = Path(dictionary or defaults["dict"])
    for p in (model / "sendump", model / "mdef", dict_path):
        if not p.is_file():
            raise DataError(f"speaker adaptation: {p} not found (a PTM model as pocketsphinx ships it)")
    known = _dictionary_words(dict_path)
    params = feat_params(model)
    fe_args = [x for k, v in params if k in _FE_KEYS for x in (k, v)]
    bw_args = [x for k, v in params if k not in _FE_KEYS and k != "-model" for x in (k, v)]
    with tempfile.TemporaryDirectory(prefix="firstwords-adapt-") as tmp:
        wd = Path(tmp)
        for sub in ("raw", "mfc", "acc"):
            (wd / sub).mkdir()
        log_file = wd / "log.txt"
        ids: list[str] = []
        lines: list[str] = []
        by_warp: dict[float, list[str]] = {}
        left_out = 0
        seconds = 0.0
        for i, u in enumerate(heard):
            ws = adaptation_words(u.text)
            if not ws or any(w not in known for w in ws):
                left_out += 1
                continue
            uid = f"u{i:06d}"
            (wd / "raw" / f"{uid}.raw").write_bytes(_to_pcm16(np.asarray(u.audio, np.float32)))
            ids.append(uid)
            lines.append(f"<s> {' '.join(ws)} </s> ({uid})")
            by_warp.setdefault(float(u.warp), []).append(uid)
            seconds += len(u.audio) / 16000
        if seconds < MIN_SPEECH_S:
            raise InputError(f"speaker adaptation needs at least {MIN_SPEECH_S:g} s of heard speech with "
                             f"words; got {seconds:.1f} s in {len(ids)} utterances ({left_out} left out): "
                             "adapt from a longer recording")
        t0 = time.perf_counter()  # the estimation's own time, not the hearing's
        for warp, uids in sorted(by_warp.items()):
            ctl = wd / f"fe-{warp:g}.ctl"
            ctl.write_text("\n".join(uids) + "\n")
            warp_args = ["-warp_type", "inverse_linear", "-warp_params", f"{warp:g}"] if warp != 1.0 else []
            _run([tools["sphinx_fe"], "-samprate", "16000", "-raw", "yes", "-input_endian", "little",
                  *fe_args, *warp_args, "-c", str(ctl), "-di", str(wd / "raw"), "-ei", "raw",
                  "-do", str(wd / "mfc"), "-eo", "mfc"], log_file)
        m = training_model(model, wd / "model", tools)
        (wd / "train.ctl").write_text("\n".join(ids) + "\n")
        (wd / "train.lsn").write_text("\n".join(lines) + "\n")
        _run([tools["bw"], "-moddeffn", str(m / "mdef.txt"), "-ts2cbfn", ".ptm.",
              "-mixwfn", str(m / "mixture_weights"), "-meanfn", str(m / "means"),
              "-varfn", str(m / "variances"), "-tmatfn", str(m / "transition_matrices"),
              "-dictfn", str(dict_path), "-fdictfn", str(m / "noisedict"),
              "-ctlfn", str(wd / "train.ctl"), "-lsnfn", str(wd / "train.lsn"),
              "-cepdir", str(wd / "mfc"), "-cepext", "mfc", *bw_args, "-accumdir", str(wd / "acc"),
              "-timing", "no"], log_file)
        if method == "map":
            _run([tools["map_adapt"], "-moddeffn", str(m / "mdef.txt"), "-ts2cbfn", ".ptm.",
                  "-meanfn", str(m / "means"), "-varfn", str(m / "variances"),
                  "-mixwfn", str(m / "mixture_weights"), "-tmatfn", str(m / "transition_matrices"),
                  "-accumdir", str(wd / "acc"), "-mapmeanfn", str(wd / "adapted"),
                  "-fixedtau", "yes", "-tau", f"{tau:g}", "-bayesmean", "no"], log_file)
        else:
            _run([tools["mllr_solve"], "-meanfn", str(m / "means"), "-varfn", str(m / "variances"),
                  "-outmllrfn", str(wd / "adapted"), "-accumdir", str(wd / "acc")], log_file)
        unaligned = len(re.findall(r"(?i)failed to align|final state not reached", log_file.read_text()))
        atomic_write_bytes(Path(out), (wd / "adapted").read_bytes())
    return {"method": method, "utterances": len(ids), "left_out": left_out, "unaligned": unaligned,
            "speech_minutes": round(seconds / 60, 2), "seconds": round(time.perf_counter() - t0, 1),
            "path": str(out)}


def hear(recognizer, audio: np.ndarray) -> HeardUtterance:
    """The next utterance heard in order (the recogniser's cepstral mean carried over) with its best
    hypothesis, ready for estimate_adaptation."""
    from firstwords.edge.asr_pool import recognise_in_order

    transcript = recognise_in_order(recognizer, audio)
    return HeardUtterance(audio, transcript.text, utterance_warp(audio, getattr(recognizer, "max_warp", 1.0)),
                          tuple(transcript.words))


def adapt_home(sessions: Iterable[str | Path], bundle: object, out: str | Path, *, vad: str = "energy",
               max_minutes: float = 30.0, on_utterance=None, method: str = "map",
               enrolment: str | Path | None = None) -> dict:
    """Estimate the home's speaker adaptation (`method`) and write it to `out`, from an enrolment folder
    (edge.asr_enrol: the speakers' readings of a script, its prompts the words said) and/or the sessions'
    soundtracks, heard by the device's VAD and unadapted recogniser up to `max_minutes` of speech, their
    hypotheses the words said. Audio is read as estimate_adaptation takes it, never all held at once.
    on_utterance(heard_so_far_s, budget_s, HeardUtterance, start_s): progress, per session utterance.
    Returns estimate_adaptation's account plus `sessions`, `enrolment` (readings used) and `heard`: per
    session, the utterances as the unadapted recogniser heard them (edge.pair.TimedUtterance, words on the
    session's clock)."""
    from firstwords.edge.asr import bundle_dictionary, make_recognizer
    from firstwords.edge.asr_enrol import readings
    from firstwords.edge.learner_stages import heard_words
    from firstwords.edge.pair import TimedUtterance

    sessions = list(sessions)
    if not sessions and enrolment is None:
        raise InputError("nothing to adapt from: give recordings of the home or an enrolment folder")
    rec = make_recognizer("pocketsphinx", bundle=bundle) if sessions else None
    timeline: dict[str, list[TimedUtterance]] = {}
    read = [0]

    def utterances():
        if enrolment is not None:
            for u in readings(enrolment):
                read[0] += 1
                yield u
        for path, start, end, u in _hear_sessions(rec, sessions, vad, max_minutes * 60, on_utterance):
            timeline.setdefault(str(path), []).append(TimedUtterance(start, end, u.text,
                                                                     words=heard_words(u, start)))
            yield u

    dictionary = rec.decoder.config["dict"] if rec is not None else bundle_dictionary(bundle)
    result = estimate_adaptation(utterances(), out, dictionary=dictionary, method=method)
    return {**result, "sessions": len(timeline), "enrolment": read[0], "heard": timeline}


def _hear_sessions(rec, sessions: Iterable[str | Path], vad: str, budget: float, on_utterance):
    """(path, start s, end s, HeardUtterance) of every utterance of the sessions, in order, until `budget`
    seconds of speech have been heard."""
    from firstwords.edge.hear import AudioFileSource
    from firstwords.edge.replay import discover_session
    from firstwords.edge.vad import make_vad

    segmenter = make_vad(vad)
    total = 0.0
    for path in sessions:
        # a bare recording (.wav / .flac) is a soundtrack; anything else a session (its frames not needed)
        session = None if Path(path).suffix.lower() in AUDIO_SUFFIXES else discover_session(path)
        audio = Path(path) if session is None else session.audio
        try:
            if audio is None:
                log.warning("%s: no soundtrack; nothing to adapt from there", path)
                continue
            src = AudioFileSource(audio, speed=None)
            segmenter.reset()
            try:
                for seg in segmenter.segments(src):
                    u = hear(rec, seg.audio)
                    total += seg.duration
                    if on_utterance is not None:
                        on_utterance(total, budget, u, seg.start)
                    yield path, seg.start, seg.end, u
                    if total >= budget:
                        break
            finally:
                src.close()
        finally:
            if session is not None:
                session.cleanup()
        if total >= budget:
            break
