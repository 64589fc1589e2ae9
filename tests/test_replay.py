"""Replay: session discovery, the sample-session maker, the replay driver and the run / replay / ask commands,
with real parts (our exporter's bundle, the SQLite memory, OpenCV video, espeak-ng + pocketsphinx)."""

import argparse
import itertools
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from firstwords.edge.errors import DataError, InputError
from firstwords.edge.pair import Utterance
from firstwords.edge.replay import choose_words_source, discover_session, object_word_recovery

ROOT = Path(__file__).resolve().parents[1]


def cli(module, argv):
    import importlib

    mod = importlib.import_module(f"firstwords.edge.commands.{module}")
    p = argparse.ArgumentParser()
    mod.add_arguments(p)
    return mod.run(p.parse_args(argv))


def touch(p, data=b"x"):
    p.write_bytes(data)
    return p


def test_discovery_of_folders_and_files_beside(tmp_path):
    d = tmp_path / "rec"
    d.mkdir()
    v, w, s = touch(d / "day1.avi"), touch(d / "day1.wav"), touch(d / "day1.srt")
    got = discover_session(d)
    assert (got.frames, got.audio, got.transcript) == (v, w, s)
    got = discover_session(v)
    assert (got.frames, got.audio, got.transcript) == (v, w, s)
    got = discover_session(s, audio=None)
    assert got.frames == v and got.transcript == s
    # an override wins; a missing override is named
    got = discover_session(d, transcript=touch(tmp_path / "other.vtt"))
    assert got.transcript.name == "other.vtt"
    with pytest.raises(DataError, match="no such audio"):
        discover_session(d, audio=tmp_path / "gone.wav")


def test_discovery_errors_say_what_to_do(tmp_path):
    with pytest.raises(DataError, match="no such session"):
        discover_session(tmp_path / "nothing")
    d = tmp_path / "only_video"
    d.mkdir()
    touch(d / "a.avi")
    with pytest.raises(DataError, match="--audio WAV or --transcript SRT"):
        discover_session(d)
    e = tmp_path / "only_srt"
    e.mkdir()
    touch(e / "a.srt")
    with pytest.raises(DataError, match="--frames"):
        discover_session(e)
    with pytest.raises(DataError, match="not a session"):
        discover_session(touch(tmp_path / "notes.txt"))


def test_words_source_choice(tmp_path):
    d = tmp_path / "s"
    d.mkdir()
    touch(d / "a.avi"), touch(d / "a.srt")
    s = discover_session(d)
    assert choose_words_source(s, "auto") == "transcript"
    with pytest.raises(DataError, match="no soundtrack"):
        choose_words_source(s, "audio")
    touch(d / "a.wav")
    s = discover_session(d)
    assert choose_words_source(s, "auto") == "audio"
    assert choose_words_source(s, "auto", recognizer_name="transcript") == "transcript"
    with pytest.raises(InputError):
        choose_words_source(s, "ears")


def test_object_word_recovery_counts_hits_misses_and_false_alarms():
    spoken = [Utterance(0, 1, "look at the shoe"), Utterance(2, 3, "a boot and a shoe"),
              Utterance(5, 6, "hi")]
    heard = [Utterance(0.1, 1.1, "look the shoe"), Utterance(2.0, 3.1, "a boot"), Utterance(5, 6, "bag")]
    r = object_word_recovery(heard, spoken, ["shoe", "boot", "bag"])
    assert (r["object_words_said"], r["object_words_recovered"], r["false_alarms"]) == (3, 2, 1)
    assert r["per_word"] == {"boot": 1.0, "shoe": 0.5}
    # heard words count at the memory's confidence threshold, a competing hypothesis' words included
    from firstwords.edge.heard import HeardWord

    unsure = [Utterance(0.1, 1.1, "look the shoe", words=(HeardWord("shoe", 0.5, 1.0, 0.1),)),
              Utterance(2.0, 3.1, "a boot", words=(HeardWord("boot", 2.2, 2.5, 0.9),
                                                   HeardWord("shoe", 2.6, 3.0, 0.4)))]
    r = object_word_recovery(unsure, spoken, ["shoe", "boot", "bag"], min_confidence=0.2)
    assert (r["object_words_said"], r["object_words_recovered"], r["false_alarms"]) == (3, 2, 0)
    assert r["per_word"] == {"boot": 1.0, "shoe": 0.5}


def test_sample_session_has_what_session_json_says(sample):
    meta = json.loads((sample.session / "session.json").read_text())
    assert meta["video"] == "session.avi" and meta["transcript"] == "session.srt" and meta["fps"] == 5.0
    timeline = json.loads((sample.corpus / "timeline.json").read_text())
    from firstwords.edge.frame_files import VideoFileSource
    from firstwords.edge.transcripts import load_transcript

    n = sum(1 for _ in VideoFileSource(sample.session / "session.avi"))
    assert n == meta["frames"] == len(timeline["frames"])
    srt = load_transcript(sample.session / "session.srt")
    said = [" ".join(u["text"].split()) for u in timeline["utterances"]]
    for o in reversed(meta["off_topic"]):  # off-topic sentences took the place of runs of chatter
        said[o["index"]:o["index"] + o["replaces"]] = [o["text"]]
    assert [u.text for u in srt] == said
    assert all(b.start >= a.end for a, b in itertools.pairwise(srt))  # spoken utterances stay apart
    if sample.has_audio:
        from firstwords.edge.hear import read_audio

        audio = read_audio(sample.session / "session.wav")
        assert meta["audio"] == "session.wav" and len(audio) / 16000 >= srt[-1].end
        # speech where the SRT says, silence well between utterances
        u = srt[len(srt) // 2]
        inside = audio[int(u.start * 16000):int(u.end * 16000)]
        assert np.sqrt(np.mean(inside ** 2)) > 0.01


def test_session_without_espeak_is_transcript_only(sample, tmp_path):
    out = tmp_path / "s"
    subprocess.run([sys.executable, "-m", "firstwords.export.sample_session", "--corpus", str(sample.corpus),
                    "--out",
                    str(out), "--no-speech", "--max-minutes", "0.5"], cwd=ROOT, check=True,
                   capture_output=True)
    meta = json.loads((out / "session.json").read_text())
    assert meta["audio"] is None and not (out / "session.wav").exists()
    s = discover_session(out)
    assert s.audio is None and choose_words_source(s, "auto") == "transcript"


def test_replay_command_transcript_then_ask(sample, tmp_path, capsys):
    mem = tmp_path / "m.db"
    rc = cli("replay", [str(sample.session), "--bundle", str(sample.bundle), "--memory", str(mem),
                        "--words-from", "transcript", "--json", "-q"])
    assert rc == 0
    out = capsys.readouterr().out
    summary = json.loads(out.strip().splitlines()[-1])
    n_utts = json.loads((sample.session / "session.json").read_text())["utterances"]  # what the SRT holds
    assert summary["utterances"] == n_utts and summary["frames_dropped"] == 0
    assert summary["words_in_memory"] >= 5 and summary["realtime_factor"] > 0
    assert "frame_preprocess" in summary["median_ms"] and "memory_update" in summary["median_ms"]

    eval_item = json.loads((sample.corpus / "eval.json").read_text())["data"][0]
    rc = cli("ask", ["--memory", str(mem), "--bundle", str(sample.bundle), "--image",
                     str(sample.corpus / eval_item["frame_filename"]), "-k", "3", "--json"])
    assert rc == 0
    words = json.loads(capsys.readouterr().out)["words"]
    assert len(words) == 3 and words[0][1] >= words[1][1] >= words[2][1]
    top = summary["top_words"][0][0]
    assert cli("ask", ["--memory", str(mem), "--word", top, "-k", "2", "--json"]) == 0
    moments = json.loads(capsys.readouterr().out)
    assert moments["exposures"] > 0 and len(moments["moments"]) == 2
    assert cli("ask", ["--memory", str(mem), "--word", "zyzzyva"]) == 0
    assert "no moments" in capsys.readouterr().out

    # the demo's summary: its first word per image is what `ask` answers for that image
    from firstwords.edge.commands.demo import naming_summary
    eval_set = json.loads((sample.corpus / "eval.json").read_text())["data"]
    share, first = naming_summary(mem, sample.bundle, sample.corpus, eval_set)
    printed = capsys.readouterr().out
    assert f"for {len(eval_set)} never-seen images" in printed and f"{share:.0%}" in printed
    assert share == sum(w == e["category"] for w, e in zip(first, eval_set)) / len(eval_set)
    for e, w in list(zip(eval_set, first))[::max(1, len(eval_set) // 5)]:
        assert cli("ask", ["--memory", str(mem), "--bundle", str(sample.bundle), "--image",
                           str(sample.corpus / e["frame_filename"]), "-k", "1", "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["words"][0][0] == w


def test_ask_errors_are_clear(tmp_path):
    from firstwords.edge.errors import MemoryStoreError

    with pytest.raises(MemoryStoreError, match="firstwords replay"):
        cli("ask", ["--memory", str(tmp_path / "none.db"), "--word", "ball"])


def test_paced_replay_runs_the_live_path(sample, tmp_path):
    """--speed: the sources are paced and the loop runs as live (frames may be dropped, never audio)."""
    from firstwords.edge.encode import Encoder
    from firstwords.edge.learner import LearnerOptions
    from firstwords.edge.memory import AssociativeMemory
    from firstwords.edge.replay import replay

    enc = Encoder(sample.bundle, threads=1)
    with AssociativeMemory(tmp_path / "m.db", enc.dim) as mem:
        s = discover_session(sample.session)
        # 40x real time: a minute of session in ~1.5 s of wall time
        rep = replay(s, enc, mem, words_from="transcript", speed=40.0, options=LearnerOptions(),
                     install_signal_handlers=False)
        assert rep.stats["utterances"] > 0
        assert rep.stats["frames_captured"] == rep.stats["frames_encoded"] + rep.stats["frames_dropped"]


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed: no soundtrack to "
                                                              "hear")
def test_audio_replay_recovers_object_words(sample, tmp_path):
    """The soundtrack -> energy VAD -> pocketsphinx (biased to the bundle's words) -> words -> memory."""
    from firstwords.edge.encode import Encoder
    from firstwords.edge.memory import AssociativeMemory
    from firstwords.edge.replay import load_utterances, replay
    from firstwords.edge.runtime import make_speech

    enc = Encoder(sample.bundle, threads=1)
    s = discover_session(sample.session, audio=None)
    spoken = load_utterances(s.transcript)
    objects = ["ball", "dog", "cat", "shoe"]  # the tiny bundle's words (firstwords.export.tiny_dual)
    words = sorted({w for u in spoken for w in u.text.lower().replace("?", " ").replace("!", " ").split()}
                   | set(objects))
    vad, rec = make_speech("energy", words, bias="lm")
    heard = []
    with AssociativeMemory(tmp_path / "m.db", enc.dim) as mem:
        rep = replay(s, enc, mem, words_from="audio", speed=None, vad=vad, recognizer=rec,
                     on_utterance=heard.append, install_signal_handlers=False)
        assert mem.stats()["utterances_learned"] == rep.stats["utterances"] > 0
    corpus_objects = json.loads((sample.session / "session.json").read_text())["object_words"]
    r = object_word_recovery(heard, spoken, corpus_objects)
    assert r["object_words_said"] > 0 and r["recovery_rate"] >= 0.5, r
    assert rep.stats["audio_overflows"] == 0 and rep.stats["frames_dropped"] == 0


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed (sudo apt-get install "
                                                           "ffmpeg): "
                    "a video's own soundtrack cannot be extracted")
def test_video_with_its_own_soundtrack_is_extracted_with_ffmpeg(sample, tmp_path):
    if not sample.has_audio:
        pytest.skip("espeak-ng not installed: the sample session has no soundtrack to mux")
    from firstwords.edge.hear import read_audio

    mkv = tmp_path / "recording.mkv"
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-i", str(sample.session / "session.avi"),
                    "-i",
                    str(sample.session / "session.wav"), "-c:v", "copy", "-c:a", "pcm_s16le", str(mkv)],
                   check=True)
    s = discover_session(mkv)
    try:
        assert s.frames == mkv and s.transcript is None and s.audio is not None and s.audio.suffix == ".wav"
        got, want = read_audio(s.audio), read_audio(sample.session / "session.wav")
        assert abs(len(got) - len(want)) < 1600 and choose_words_source(s, "auto") == "audio"
    finally:
        s.cleanup()
    assert not s.audio.exists()  # the extracted soundtrack lived in a temp folder


def test_replay_leaves_the_callers_options_alone(sample, tmp_path):
    """replay() paces and clocks a copy: the caller's options are unchanged afterwards (they were not)."""
    import dataclasses

    from firstwords.edge.encode import Encoder
    from firstwords.edge.learner import LearnerOptions
    from firstwords.edge.memory import AssociativeMemory
    from firstwords.edge.replay import replay

    opts = LearnerOptions(realtime=True, clock_origin=None, fps=5.0)
    before = dataclasses.asdict(opts)
    with AssociativeMemory(tmp_path / "m.db", 16) as mem:
        rep = replay(discover_session(sample.session), Encoder(sample.bundle, threads=1), mem,
                     words_from="transcript", speed=None, options=opts, install_signal_handlers=False)
    assert rep.stats["utterances"] > 0 and rep.stats["frames_dropped"] == 0
    assert dataclasses.asdict(opts) == before


def test_build_runtime_assembles_what_the_config_says(sample, tmp_path):
    from firstwords.edge.config import load_device_config, resolve_device_config
    from firstwords.edge.runtime import build_runtime

    cfg = load_device_config(resolve_device_config("rpi4"))
    with build_runtime("rpi4", sample.bundle, tmp_path / "sub" / "m.db", realtime=False,
                       clock_origin=None) as rt:
        assert rt.config == cfg and rt.vad is None and rt.recognizer is None
        o = rt.options
        assert (o.realtime, o.fps, o.max_frames, o.clock_origin) == (
            False, cfg.pairing.fps, cfg.pairing.max_frames, None)
        assert rt.memory.dim == rt.encoder.dim
        assert rt.memory.capacity_words == cfg.memory.capacity_words
        # full speed: two batches encoded at once, on half the threads each; the memory commits without
        # waiting for the disk (synchronous NORMAL = 1)
        assert o.encode_workers == 2 and rt.encoder.threads == cfg.model.threads // 2
        assert (o.frame_queue, o.encode_batch) == (cfg.pairing.frame_queue, 8)
        assert rt.memory._store.query("PRAGMA synchronous") == [(1,)]
        mem = rt.memory
    from firstwords.edge.errors import MemoryStoreError

    with pytest.raises(MemoryStoreError, match="closed"):  # closed with the runtime
        mem.stats()
    pytest.importorskip("pocketsphinx")
    with build_runtime(cfg, sample.bundle, tmp_path / "m2.db", speech=True, capacity_words=7) as rt:
        from firstwords.edge.asr_pool import RecognizerPool

        assert rt.vad is not None and isinstance(rt.recognizer, RecognizerPool)  # [audio] asr_workers = 2
        assert rt.recognizer.workers == cfg.audio.asr_workers == 2
        assert rt.options.max_backlog_s == cfg.audio.max_backlog_s
        assert rt.memory.capacity_words == 7 and rt.options.realtime
        # live: one batch at a time on all the config's threads, every commit on disk (synchronous FULL = 2)
        assert rt.options.encode_workers == 1 and rt.encoder.threads == cfg.model.threads
        assert rt.memory._store.query("PRAGMA synchronous") == [(2,)]
    with build_runtime(cfg, sample.bundle, tmp_path / "m3.db", speech=True, asr_workers=1) as rt:
        assert hasattr(rt.recognizer, "transcribe")


def test_a_full_speed_replay_learns_what_a_plain_one_learns(sample, tmp_path):
    """What makes a full-speed replay fast (two batches encoded at once, frames prepared in the capture
    thread, commits that do not wait for the disk) changes how fast it runs, not what the memory learns."""
    from firstwords.edge.encode import Encoder
    from firstwords.edge.replay import replay
    from firstwords.edge.runtime import build_runtime

    def learned(rt):
        replay(discover_session(sample.session), rt.encoder, rt.memory, words_from="transcript",
               options=rt.options, install_signal_handlers=False)
        mem = rt.memory
        words = sorted(mem.words())
        return (words, [mem.exposures(w) for w in words], [mem.strength(w) for w in words],
                mem.word_vectors(words), mem.episode_times())

    with build_runtime("laptop", sample.bundle, tmp_path / "fast.db", realtime=False) as rt:
        assert rt.options.encode_workers == 2
        fast = learned(rt)
    with build_runtime("laptop", Encoder(sample.bundle, threads=1), tmp_path / "plain.db", realtime=False,
                       encode_batch=3, frame_queue=4) as rt:
        assert rt.options.encode_workers == 1
        plain = learned(rt)
    assert len(fast[0]) > 5 and fast[0] == plain[0] and fast[1] == plain[1] and fast[4] == plain[4]
    np.testing.assert_allclose(fast[2], plain[2], rtol=1e-6, atol=1e-7)
    for w in fast[0]:
        np.testing.assert_allclose(fast[3][w], plain[3][w], rtol=1e-6, atol=1e-7)
