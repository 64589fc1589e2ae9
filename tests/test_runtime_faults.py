"""Faults met by `replay` / `run` as a user meets them, with real parts (our exporter's bundle, OpenCV video,
SQLite, espeak-ng + pocketsphinx): NaN audio, an unreadable or huge frame, a broken video, files in another
encoding. Each time: the stage threads survive odd input, a fatal error ends the command non-zero with one
line saying what failed, and warnings are printed, never silent."""

from __future__ import annotations

import argparse
import importlib
import json
import shutil
import sqlite3
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from firstwords.edge.errors import DataError


def cli(module, argv):
    mod = importlib.import_module(f"firstwords.edge.commands.{module}")
    p = argparse.ArgumentParser()
    mod.add_arguments(p)
    return mod.run(p.parse_args(argv))


def replay(sample, session, mem, *extra):
    return cli("replay", [str(session), "--bundle", str(sample.bundle), "--memory", str(mem), "-q", "--json",
                          *extra])


def last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


def session_copy(sample, dst: Path, *, audio: bool = True) -> Path:
    dst.mkdir()
    shutil.copy(sample.session / "session.avi", dst / "session.avi")
    shutil.copy(sample.session / "session.srt", dst / "session.srt")
    if audio:
        shutil.copy(sample.session / "session.wav", dst / "session.wav")
    return dst


# ------------------------------------------------------------------------------------------ NaN audio

def test_nan_burst_in_a_float_wav_is_replaced_counted_and_the_session_goes_on(sample, tmp_path, capsys):
    """A float32 soundtrack with 100 NaN samples at 40 s: before, the audio thread died there (exit 0, the
    rest of the session ignored). Now the samples are zeroed and counted, and the whole session is heard."""
    sf = pytest.importorskip("soundfile")
    if not sample.has_audio:
        pytest.skip("espeak-ng is needed for the sample session's soundtrack")
    from firstwords.edge.hear import read_audio

    clean = session_copy(sample, tmp_path / "clean")
    assert replay(sample, clean, tmp_path / "clean.db", "--words-from", "audio") == 0
    want = last_json(capsys.readouterr().out)

    nan = session_copy(sample, tmp_path / "nan", audio=False)
    a = read_audio(sample.session / "session.wav")
    a[40 * 16000: 40 * 16000 + 100] = np.nan
    sf.write(nan / "session.wav", a.astype(np.float32), 16000, subtype="FLOAT")
    rc = replay(sample, nan, tmp_path / "nan.db", "--words-from", "audio")
    cap = capsys.readouterr()
    got = last_json(cap.out)
    assert rc == 0, cap.err
    assert got["utterances"] >= want["utterances"] - 1, (got, want)
    assert got["nonfinite_samples"] == 100
    assert "NaN or Inf" in cap.err  # a warning, printed


def test_a_stage_that_dies_stops_the_run_non_zero_with_one_line(sample, tmp_path, capsys):
    """A video OpenCV cannot decode kills the capture stage: the command says so and exits non-zero
    (before: exit 0)."""
    s = session_copy(sample, tmp_path / "s", audio=False)
    (s / "session.avi").write_bytes(b"RIFF\x00\x00\x00\x00AVI garbage" * 10)
    rc = replay(sample, s, tmp_path / "m.db", "--words-from", "transcript")
    err = capsys.readouterr().err
    assert rc == 1
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "capture" in lines[0] and "session.avi" in lines[0], err


# ------------------------------------------------------------------------------------------ frames folders

def frames_session(sample, dst: Path, n: int = 40) -> Path:
    """A session folder of n jpg frames at 5 fps (from the sample video) and the sample's transcript."""
    import cv2
    from firstwords.edge.frame_files import VideoFileSource

    (dst / "frames").mkdir(parents=True)
    for i, (_, f) in enumerate(VideoFileSource(sample.session / "session.avi", fps=5.0)):
        if i == n:
            break
        cv2.imwrite(str(dst / "frames" / f"{i:06d}.jpg"), f[:, :, ::-1])
    shutil.copy(sample.session / "session.srt", dst / "session.srt")
    return dst


def test_an_unreadable_jpg_among_40_is_skipped_and_counted(sample, tmp_path, capsys):
    good = frames_session(sample, tmp_path / "good")
    assert replay(sample, good, tmp_path / "good.db") == 0
    want = last_json(capsys.readouterr().out)
    bad = frames_session(sample, tmp_path / "bad")
    (bad / "frames" / "000010.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    rc = replay(sample, bad, tmp_path / "bad.db")
    cap = capsys.readouterr()
    got = last_json(cap.out)
    assert rc == 0, cap.err
    assert got["frames_unreadable"] == 1 and "000010.jpg" in cap.err
    assert got["utterances"] >= want["utterances"] - 1 > 0, (got, want)


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims width x height (the pixel data is a stub: only the header must be read)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path


def test_read_image_refuses_huge_images_from_the_header(tmp_path):
    from firstwords.edge.images import MAX_PIXELS, image_size, read_image

    huge = png_header_only(tmp_path / "huge.png", 20000, 20000)
    assert image_size(huge) == (20000, 20000)
    with pytest.raises(DataError, match=r"20000 x 20000.*limit"):
        read_image(huge)
    assert 20000 * 20000 > MAX_PIXELS
    import cv2

    small = tmp_path / "small.jpg"
    cv2.imwrite(str(small), np.full((30, 40, 3), 200, np.uint8))
    assert image_size(small) == (40, 30)
    rgb = read_image(small)
    assert rgb.shape == (30, 40, 3) and rgb.dtype == np.uint8
    with pytest.raises(DataError, match="limit"):
        read_image(small, max_pixels=100)
    with pytest.raises(DataError, match="no such image"):
        read_image(tmp_path / "missing.png")
    (tmp_path / "text.png").write_text("hello")
    with pytest.raises(DataError, match="not a readable image"):
        read_image(tmp_path / "text.png")


def test_a_huge_frame_in_a_folder_is_skipped_not_decoded(sample, tmp_path, capsys):
    s = frames_session(sample, tmp_path / "s")
    (s / "frames" / "000012.jpg").unlink()
    png_header_only(s / "frames" / "000012.png", 20000, 20000)
    rc = replay(sample, s, tmp_path / "m.db")
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    assert last_json(cap.out)["frames_unreadable"] == 1 and "20000 x 20000" in cap.err


# ---------------------------------------------------------------------------------------- warnings, encodings

def test_empty_transcript_and_header_only_wav_are_warned_about(sample, tmp_path, capsys):
    s = session_copy(sample, tmp_path / "s", audio=False)
    (s / "session.srt").write_text("")
    rc = replay(sample, s, tmp_path / "m.db", "--words-from", "transcript")
    cap = capsys.readouterr()
    assert rc == 0 and "warning:" in cap.err and "no utterances" in cap.err, cap.err
    from firstwords.edge.hear import write_wav

    h = session_copy(sample, tmp_path / "h", audio=False)
    write_wav(h / "session.wav", np.zeros(0, np.float32))
    rc = replay(sample, h, tmp_path / "h.db", "--words-from", "audio")
    cap = capsys.readouterr()
    assert rc == 0 and "warning:" in cap.err and "no audio" in cap.err, cap.err


def test_a_video_without_frames_is_warned_about_and_an_empty_file_is_an_error(sample, tmp_path, capsys):
    import cv2

    s = session_copy(sample, tmp_path / "s", audio=False)
    cv2.VideoWriter(str(s / "session.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 5, (64, 48)).release()
    rc = replay(sample, s, tmp_path / "m.db")
    cap = capsys.readouterr()
    assert rc == 0 and last_json(cap.out)["utterances"] == 0
    assert "warning:" in cap.err and "no frames were read" in cap.err, cap.err
    (s / "session.avi").write_bytes(b"")
    rc = replay(sample, s, tmp_path / "m2.db")
    err = capsys.readouterr().err
    assert rc == 1 and "cannot read this video" in err


def test_srt_in_cp1252_is_read_with_encoding_or_by_fallback(sample, tmp_path, capsys):
    s = session_copy(sample, tmp_path / "s", audio=False)
    srt = (sample.session / "session.srt").read_text(encoding="utf-8").replace("good job", "très bien")
    (s / "session.srt").write_bytes(srt.encode("cp1252"))
    assert replay(sample, s, tmp_path / "a.db", "--encoding", "cp1252") == 0
    a = last_json(capsys.readouterr().out)
    with sqlite3.connect(f"file:{tmp_path / 'a.db'}?mode=ro", uri=True) as db:
        texts = [t for (t,) in db.execute("SELECT text FROM episodes")]
    assert a["utterances"] > 0 and any("très bien" in t for t in texts), texts[:5]
    assert replay(sample, s, tmp_path / "b.db") == 0  # no option: UTF-8 fails, the fallback is said
    cap = capsys.readouterr()
    assert last_json(cap.out)["utterances"] == a["utterances"] and "--encoding" in cap.err
    with pytest.raises(DataError, match="--encoding"):
        replay(sample, s, tmp_path / "c.db", "--encoding", "utf-8")
