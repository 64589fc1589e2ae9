"""Enrolment (edge.asr_enrol): a script naming the device's words, read by the home's speakers, recorded
prompt by prompt through the real VAD, and the readings, with their prompts as the words said, adapt the
recogniser."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from firstwords.edge import asr_enrol
from firstwords.edge.errors import DataError, InputError
from firstwords.edge.hear import SAMPLE_RATE, AudioFileSource, read_audio, write_wav
from firstwords.edge.vad import make_vad


def test_the_script_names_every_word_in_several_sentences_none_a_childs_phrase():
    from firstwords.edge.speech_text import UNSEEN_NAMING
    from firstwords.export.sample_corpus import NAMING

    prompts = asr_enrol.enrolment_prompts(["shoe", "Boot", "shoe"], per_word=3)
    assert len(prompts) == 6 and len(set(prompts)) == 6  # each word once per round, duplicates dropped
    for w in ("shoe", "boot"):
        assert sum(w in p.split() for p in prompts) == 3
    # what is learned is the voice, not the sentences the device will hear
    assert not set(asr_enrol.PROMPTS) & (set(NAMING) | set(UNSEEN_NAMING))
    many = [f"word{i}" for i in range(asr_enrol.MANY + 1)]  # a bundle's content words: a shorter script
    assert len(asr_enrol.enrolment_prompts(many)) == 2 * len(many)
    assert len(asr_enrol.enrolment_prompts(["shoe"])) == asr_enrol.PER_WORD
    with pytest.raises(InputError, match="at least one word"):
        asr_enrol.enrolment_prompts([" "])
    with pytest.raises(InputError, match="prompts per word"):
        asr_enrol.enrolment_prompts(["shoe"], per_word=9)


def test_a_folder_keeps_one_script_and_says_what_is_wrong_with_a_bad_one(tmp_path):
    folder = tmp_path / "enrol"
    asr_enrol.write_prompts(folder, ["the next word is shoe", "the next word is boot"])
    assert asr_enrol.read_prompts(folder) == {"001": "the next word is shoe", "002": "the next word is boot"}
    asr_enrol.write_prompts(folder, ["the next word is shoe", "the next word is boot"])  # the same: fine
    with pytest.raises(InputError, match="another script"):  # its readings belong to the first
        asr_enrol.write_prompts(folder, ["the next word is dress"])
    assert asr_enrol.read_prompts(folder)["002"] == "the next word is boot"
    with pytest.raises(DataError, match="firstwords enrol"):
        asr_enrol.read_prompts(tmp_path / "nowhere")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / asr_enrol.PROMPTS_FILE).write_text("001 no tab here\n")
    with pytest.raises(DataError, match=r"prompts.txt:1: expected 'ID<TAB>prompt'"):
        asr_enrol.read_prompts(tmp_path / "bad")
    assert asr_enrol.speaker_dir(folder, "espeak:en-us+f3").name == "espeak_en-us_f3"
    with pytest.raises(InputError, match="needs a name"):
        asr_enrol.speaker_dir(folder, "::")


def _tone(seconds: float, hz: float = 220.0) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (0.3 * np.sin(2 * np.pi * hz * t) * (1 + 0.5 * np.sin(2 * np.pi * 4 * t))).astype(np.float32)


def _microphone(tmp_path: Path, readings: list[float], gap: float = 1.0) -> AudioFileSource:
    """What a microphone hears (the hardware's edge, through the real file source and VAD): a reading of
    each given length, with quiet room noise between."""
    rng = np.random.default_rng(0)
    parts = []
    for s in readings:
        parts += [0.001 * rng.standard_normal(int(gap * SAMPLE_RATE)).astype(np.float32), _tone(s)]
    parts.append(0.001 * rng.standard_normal(int(gap * SAMPLE_RATE)).astype(np.float32))
    path = tmp_path / "mic.wav"
    write_wav(path, np.concatenate(parts))
    return AudioFileSource(path)


def test_recording_takes_one_reading_per_prompt_and_a_second_run_only_the_missing(tmp_path):
    folder = tmp_path / "enrol"
    asr_enrol.write_prompts(folder, asr_enrol.enrolment_prompts(["shoe", "boot", "dress"], per_word=1))
    shown = []
    # the microphone stops after two readings: the third prompt is left for the next run
    got = asr_enrol.record(folder, "Mum", _microphone(tmp_path, [0.8, 1.2]), make_vad("energy"),
                           on_prompt=lambda i, n, text: shown.append((i, n, text)))
    assert got == {"speaker": "Mum", "prompts": 3, "recorded": 2, "missing": 1, "already": 0}
    assert [s[2] for s in shown] == ["please say the word shoe for me", "please say the word boot for me",
                                     "please say the word dress for me"][:len(shown)]
    lengths = [len(read_audio(folder / "Mum" / f"00{i}.wav")) / SAMPLE_RATE for i in (1, 2)]
    assert 0.8 <= lengths[0] < 1.3 and 1.2 <= lengths[1] < 1.7  # each reading, its padding, nothing more
    assert not (folder / "Mum" / "003.wav").exists()
    again = asr_enrol.record(folder, "Mum", _microphone(tmp_path, [1.0]), make_vad("energy"))
    assert again == {"speaker": "Mum", "prompts": 3, "recorded": 1, "missing": 0, "already": 2}
    assert asr_enrol.summary(folder) == {"prompts": 3, "speakers": {"Mum": 3}}


def test_a_prompt_nobody_reads_is_skipped_after_the_timeout_not_waited_for_forever(tmp_path):
    folder = tmp_path / "enrol"
    asr_enrol.write_prompts(folder, asr_enrol.enrolment_prompts(["shoe", "boot"], per_word=1))
    # 3 s of silence, then a reading: the first prompt times out, the reading goes to the second
    got = asr_enrol.record(folder, "dad", _microphone(tmp_path, [1.0], gap=3.0), make_vad("energy"),
                           timeout_s=2.0)
    assert got["recorded"] == 1 and got["missing"] == 1
    assert (folder / "dad" / "002.wav").is_file() and not (folder / "dad" / "001.wav").exists()


def test_readings_carry_their_prompts_and_strays_are_skipped(tmp_path, caplog):
    folder = tmp_path / "enrol"
    asr_enrol.write_prompts(folder, ["the next word is shoe", "the next word is boot"])
    with pytest.raises(InputError, match="--speaker NAME"):  # a script nobody has read yet
        list(asr_enrol.readings(folder))
    for speaker, uid in (("a", "001"), ("a", "002"), ("b", "002"), ("b", "077")):
        (folder / speaker).mkdir(exist_ok=True)
        write_wav(folder / speaker / f"{uid}.wav", _tone(0.5, 120.0 if speaker == "a" else 260.0))
    with caplog.at_level(logging.WARNING):
        got = list(asr_enrol.readings(folder))
    assert [u.text for u in got] == ["the next word is shoe", "the next word is boot",
                                     "the next word is boot"]
    assert [u.warp for u in got] == [1.0, 1.0, 1.2]  # each reading heard with its speaker's warp
    assert "077" in caplog.text


@pytest.fixture(scope="module")
def tools():
    from firstwords.edge.asr_adapt import find_tools
    from firstwords.edge.errors import MissingExtraError
    from firstwords.edge.synth import available_voices

    pytest.importorskip("pocketsphinx")
    try:
        find_tools()
    except MissingExtraError as e:
        pytest.skip(str(e))
    if len(available_voices(["flite:awb", "flite:slt"])) < 2:
        pytest.skip("flite is not installed (tools/install_system_deps.sh)")


def test_enrol_and_adapt_commands_write_the_adaptation_the_runtime_hears_through(tools, sample, tmp_path):
    """`firstwords enrol --voices` (synthesisers reading) then `firstwords adapt --enrolment`: no session
    needed; adapt with nothing to adapt from is a clear error."""
    from firstwords.edge.asr_adapt import adaptation_path
    from firstwords.edge.runtime import build_runtime

    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    folder, memory = tmp_path / "enrolment", tmp_path / "home" / "memory.db"
    memory.parent.mkdir()

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "firstwords.edge.cli", *args], capture_output=True,
                              text=True, env=env, timeout=600, check=False)

    proc = cli("enrol", str(folder), "--words", "shoe,boot,shirt,dress", "--voices", "flite:awb,flite:slt")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1])["speakers"] == {"flite_awb": 16, "flite_slt": 16}
    proc = cli("adapt", "--memory", str(memory), "--bundle", str(sample.bundle))
    assert proc.returncode != 0 and "--enrolment" in proc.stderr  # nothing to adapt from
    assert not adaptation_path(memory).exists()
    proc = cli("adapt", "--enrolment", str(folder), "--memory", str(memory), "--bundle", str(sample.bundle))
    assert proc.returncode == 0, proc.stderr[-2000:]
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    assert info["enrolment"] == 32 and info["sessions"] == 0 and info["left_out"] == 0
    assert Path(info["path"]) == adaptation_path(memory) and adaptation_path(memory).is_file()
    with build_runtime("laptop", sample.bundle, memory, realtime=False, speech=True, asr_workers=1) as rt:
        assert rt.recognizer.adaptation == str(adaptation_path(memory))
