"""Enrolment: the home's speakers read a short script that names the device's words, and the recordings, with
the script as their transcript, adapt the recogniser to their voices (edge.asr_adapt), as dictation software
enrols its user.

Why a script: adaptation from the home's own speech (`adapt_home`) learns from the recogniser's hypotheses,
so a word one voice is always misheard as stays misheard: the adaptation learns the wrong word's sounds from
it. On the demo session (six voices, 173 namings) flite awb's "shirt" was heard "shower" 5 times in 5 and
flite slt's "boot" "view" 5 times in 5, before adaptation from the home's speech and after. Read from a
script, the words are known. Measured on that session's soundtrack by tools/bench_replay.py (--adapt enrol,
home, none): 164 of 173 object words heard after an enrolment on the bundle's 41 content words (two prompts
each, read by each voice: ~2.3 minutes per speaker), 153 after adaptation from the session's own talk, 145
unadapted.

Why the bundle's words and not only the objects a study names: enrolled on the 8 object words alone (four
prompts each), the recogniser heard 165 of them (one recogniser in order), but a new word less well: "bag",
never in the bundle, said 10 times by the six voices (tools/bench_memory.py --spoken), was heard 1.2 times on
average (3.8 after the content-word script, 2.6 after adaptation from the voices' talk), mostly as the
enrolled "pants". Adding the home's talk to a script lowers it (156 with the object-word script): the wrong
hypotheses pull the same means back, so `firstwords adapt --enrolment` is best given alone.

The prompts are not the phrases a parent says to a child (edge.speech_text and the sample corpus's templates):
what is learned is the speaker's voice, not the sentences.

A folder holds one script and its readings, one subfolder per speaker:
    DIR/prompts.txt      one prompt per line, "ID<TAB>text"
    DIR/SPEAKER/ID.wav   that speaker's reading of prompt ID (any rate; mono or stereo)
`firstwords enrol` writes it: recorded from the microphone (`record`), prompt by prompt, or spoken by speech
synthesisers (`synthesize`: demos and benchmarks). `firstwords adapt --enrolment DIR` adapts from it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
from firstwords.edge.asr_adapt import HeardUtterance
from firstwords.edge.asr_warp import utterance_warp
from firstwords.edge.atomic import atomic_write_bytes
from firstwords.edge.errors import DataError, InputError
from firstwords.edge.hear import SAMPLE_RATE, read_audio, write_wav

log = logging.getLogger(__name__)

PROMPTS = ("please say the word {w} for me", "the next word is {w}", "I am reading the word {w} out loud",
           "my favourite {w} is the blue one")
PER_WORD = 4  # prompts per word (each a different carrier sentence); 2 for a script of more than MANY words
MANY = 20
PROMPTS_FILE = "prompts.txt"
TIMEOUT_S = 12.0  # seconds of audio to wait for a prompt's reading before moving on


def bundle_words(bundle: object) -> list[str]:
    """The words a script names by default: the bundle's content words (function words left out)."""
    from firstwords.edge.asr_whisper import bundle_words as vocabulary
    from firstwords.edge.asr_whisper import content_words

    return content_words(vocabulary(bundle))


def enrolment_prompts(words: Iterable[str], per_word: int | None = None) -> list[str]:
    """The script: every word in `per_word` carrier sentences (default PER_WORD, 2 for more than MANY words),
    round by round (each word once per round)."""
    words = list(dict.fromkeys(w.strip().lower() for w in words if w and w.strip()))
    if not words:
        raise InputError("an enrolment script needs at least one word (--words)")
    per_word = per_word or (PER_WORD if len(words) <= MANY else 2)
    if not 1 <= per_word <= len(PROMPTS):
        raise InputError(f"prompts per word must be within 1..{len(PROMPTS)}, got {per_word}")
    return [PROMPTS[r].format(w=w) for r in range(per_word) for w in words]


def write_prompts(folder: str | Path, prompts: list[str]) -> Path:
    """Write the script into `folder`. A folder already holding a different script refuses (its readings
    belong to that one)."""
    path = Path(folder) / PROMPTS_FILE
    text = "".join(f"{i:03d}\t{p}\n" for i, p in enumerate(prompts, 1))
    if path.is_file() and path.read_text(encoding="utf-8") != text:
        raise InputError(f"{path} holds another script (its readings belong to it): enrol into a new folder, "
                         "or give the same --words and --per-word as before")
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, text.encode("utf-8"))
    return path


def read_prompts(folder: str | Path) -> dict[str, str]:
    """{ID: text} of the folder's script; DataError when it is missing or malformed."""
    path = Path(folder) / PROMPTS_FILE
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise DataError(f"{path}: no enrolment script there ({e.strerror}); "
                        "write one with firstwords enrol") from e
    prompts = {}
    for n, line in enumerate(lines, 1):
        uid, tab, text = line.partition("\t")
        if not line.strip():
            continue
        if not tab or not uid.strip() or not text.strip():
            raise DataError(f"{path}:{n}: expected 'ID<TAB>prompt', got {line!r}")
        prompts[uid.strip()] = text.strip()
    if not prompts:
        raise DataError(f"{path} holds no prompts")
    return prompts


def speaker_dir(folder: str | Path, speaker: str) -> Path:
    """Where a speaker's readings go: a folder name made of the speaker's name ("espeak:en-us+f3" ->
    espeak_en-us_f3)."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", speaker.strip()).strip("._")
    if not name:
        raise InputError(f"a speaker needs a name made of letters or digits, got {speaker!r}")
    return Path(folder) / name


def record(folder: str | Path, speaker: str, blocks: Iterable, vad, *,
           on_prompt: Callable[[int, int, str], None] | None = None,
           timeout_s: float = TIMEOUT_S) -> dict:
    """Record `speaker` reading the folder's script from an audio source (`blocks`: edge.hear AudioBlocks,
    e.g. a MicrophoneSource): for each prompt not yet read, on_prompt(i, n, text) shows it, and the next
    utterance the VAD closes is its reading. A prompt with no speech begun within `timeout_s` of audio is
    left for the next run (which records only what is missing). Returns counts."""
    prompts = read_prompts(folder)
    out = speaker_dir(folder, speaker)
    out.mkdir(parents=True, exist_ok=True)
    todo = [(uid, text) for uid, text in prompts.items() if not (out / f"{uid}.wav").is_file()]
    recorded = skipped = 0
    it = iter(blocks)
    vad.reset()
    for k, (uid, text) in enumerate(todo, 1):
        if on_prompt is not None:
            on_prompt(k, len(todo), text)
        waited, seg, ended = 0.0, None, True
        for block in it:
            segs = vad.feed(block.t, block.samples)
            waited += len(block.samples) / SAMPLE_RATE
            if segs:
                seg, ended = segs[0], False
                break
            if waited >= timeout_s and vad.open_start is None:  # a reading under way is waited for
                ended = False
                break
        if ended:  # the source has ended (the microphone closed): a reading under way is whole now
            seg = next(iter(vad.flush()), None)
        if seg is None:
            skipped += 1
            log.warning("no reading heard for prompt %s (%r); run enrol again to record it", uid, text)
            if ended:  # nothing more will come
                skipped += len(todo) - k
                break
            continue
        write_wav(out / f"{uid}.wav", seg.audio)
        recorded += 1
    return {"speaker": out.name, "prompts": len(prompts), "recorded": recorded, "missing": skipped,
            "already": len(prompts) - len(todo)}


def synthesize(folder: str | Path, voices: list[str], *, noise_db: float | None = None, seed: int = 0,
               on_prompt: Callable[[int, int, str], None] | None = None) -> dict:
    """Each speech synthesiser voice (edge.synth, e.g. the sample soundtrack's) reads the folder's script,
    at the sample soundtrack's room noise (speech between adults: ADULT_PROSODY). For demos and benchmarks."""
    from firstwords.edge.speech_text import ADULT_PROSODY
    from firstwords.edge.synth import NOISE_DB, room_noise, speak

    prompts = read_prompts(folder)
    rng = np.random.default_rng(seed)
    rate, pitch = ADULT_PROSODY
    n = 0
    for voice in voices:
        out = speaker_dir(folder, voice)
        out.mkdir(parents=True, exist_ok=True)
        for uid, text in prompts.items():
            x = speak(text, voice, rate=rate, pitch=pitch)
            pad = np.zeros(SAMPLE_RATE // 10, np.float32)
            x = np.concatenate([pad, 0.8 * x, pad])
            x = x + room_noise(len(x), rng, NOISE_DB if noise_db is None else noise_db)
            write_wav(out / f"{uid}.wav", np.clip(x, -1, 1))
            n += 1
            if on_prompt is not None:
                on_prompt(n, len(prompts) * len(voices), f"{voice}: {text}")
    return {"voices": len(voices), "prompts": len(prompts), "readings": n}


def readings(folder: str | Path) -> Iterator[HeardUtterance]:
    """The folder's readings, each with its prompt as the words said, for estimate_adaptation (supervised).
    A recording whose name is no prompt's ID is skipped with a warning; a folder with no reading at all is an
    InputError saying how to record them."""
    prompts = read_prompts(folder)
    found = [(wav, prompts.get(wav.stem)) for sp in sorted(p for p in Path(folder).iterdir() if p.is_dir())
             for wav in sorted(sp.glob("*.wav"))]
    for wav, text in found:
        if text is None:
            log.warning("%s: no prompt %r in %s; skipped", wav, wav.stem, PROMPTS_FILE)
    if not any(text for _, text in found):
        raise InputError(f"{folder} holds no readings of its script: record them with firstwords enrol "
                         f"{folder} --speaker NAME (one run per speaker)")
    for wav, text in found:
        if text is not None:
            audio = read_audio(wav)
            yield HeardUtterance(audio, text, utterance_warp(audio))


def summary(folder: str | Path) -> dict:
    """Speakers and readings of an enrolment folder (what enrol and adapt report)."""
    prompts = read_prompts(folder)
    per = {p.name: sum((p / f"{uid}.wav").is_file() for uid in prompts)
           for p in sorted(Path(folder).iterdir()) if p.is_dir()}
    return {"prompts": len(prompts), "speakers": per}


def adapt_from_voices(bundle: object, voices: list[str], out: str | Path, folder: str | Path,
                      words: list[str] | None = None) -> dict:
    """Speech synthesiser voices enrolled on a script (in `folder`) of `words`, by default the bundle's
    content words as `firstwords enrol --bundle` names them, and the adaptation estimated from their readings
    into `out`: the home of the demo and the benchmarks, whose speakers are synthesisers. Returns
    adapt_home's account plus the script's `words` and `prompts`."""
    from firstwords.edge.asr_adapt import adapt_home

    words = bundle_words(bundle) if words is None else words
    prompts = enrolment_prompts(words)
    write_prompts(folder, prompts)
    synthesize(folder, voices)
    return {**adapt_home([], bundle, out, enrolment=folder), "words": len(words), "prompts": len(prompts)}
