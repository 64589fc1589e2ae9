"""Pairing utterances with the frames of their windows (CVCL: start -> next start, <= 32 frames at 5 fps)."""

import numpy as np
import pytest
from firstwords.edge.pair import FrameRing, Pairer, Utterance, pair_offline, select_frames, window_end


def test_window_runs_to_next_start_and_is_capped():
    assert window_end(1.0, 3.0, 2.0, fps=5, max_frames=32) == 3.0
    assert window_end(1.0, 100.0, 2.0, fps=5, max_frames=32) == pytest.approx(1.0 + 32 / 5)
    # overlapping speech: the window covers at least the utterance itself
    assert window_end(1.0, 1.5, 2.5, fps=5, max_frames=32) == 2.5
    assert window_end(1.0, None, 2.0, fps=5, max_frames=32) == 2.0


def test_select_frames_one_per_slot_and_capped():
    times = np.arange(0, 20, 0.1)  # a 10 fps stream
    idx = select_frames(times, 2.0, 4.0, fps=5, max_frames=32)
    assert np.allclose(times[idx], np.arange(2.0, 4.0, 0.2))
    idx = select_frames(times, 0.0, 20.0, fps=5, max_frames=32)
    assert len(idx) == 32 and times[idx[-1]] == pytest.approx(6.2)
    assert len(select_frames(times, 30.0, 31.0, 5, 32)) == 0
    # a window shorter than a frame period still takes the frame inside it
    assert list(select_frames(np.array([1.0, 1.05]), 1.02, 1.06, 5, 32)) == [1]


def test_pair_offline_matches_cvcl_windows():
    frames = np.arange(0, 10, 0.2)
    utts = [Utterance(0.0, 1.0, "a ball"), Utterance(2.0, 2.5, "the cup"), Utterance(9.0, 9.5, "bye")]
    w = pair_offline(frames, utts)
    assert np.allclose(frames[w[0]], np.arange(0, 2.0, 0.2))
    assert len(w[1]) == 32 and frames[w[1][0]] == pytest.approx(2.0)
    assert np.allclose(frames[w[2]], [9.0, 9.2, 9.4])


def test_ring_is_bounded_and_sorted():
    ring = FrameRing(4)
    for t in [0.0, 0.2, 0.6, 0.4, 0.8, 1.0]:
        ring.add(t, t)
    assert list(ring.times()) == [0.4, 0.6, 0.8, 1.0]
    ring.drop_before(0.7)
    assert list(ring.times()) == [0.8, 1.0]


def feed(p, t0, t1, fps=5):
    for t in np.arange(t0, t1, 1 / fps):
        p.add_frame(float(t), np.array([t], dtype=np.float32))


def test_pairer_waits_for_frames_then_closes_window():
    p = Pairer(fps=5, max_frames=32)
    p.add_utterance(Utterance(1.0, 1.5, "look a ball"))
    p.add_utterance(Utterance(3.0, 3.4, "a cup"))
    feed(p, 0, 2.0)
    assert p.ready(utterances_until=3.5) == []  # first window ends at 3.0, frames only up to 1.8
    feed(p, 2.0, 3.2)
    out = p.ready(utterances_until=3.5)
    assert len(out) == 1 and out[0].utterance.text == "look a ball"
    assert np.allclose(out[0].times, np.arange(1.0, 3.0, 0.2))
    assert out[0].stacked().shape == (10, 1)
    # the last one stays open until the recogniser has passed its capped end (a next utterance may come)
    feed(p, 3.2, 12.0)
    assert p.ready(utterances_until=5.0) == []
    assert len(p.ready(utterances_until=20.0)) == 1
    assert p.stats.paired == 2 and p.stats.frames_paired == 10 + 32


def test_empty_window_is_reported_not_crashed():
    p = Pairer(fps=5, max_frames=32, grace=1.0)
    p.add_utterance(Utterance(5.0, 5.5, "where is it"))
    p.add_utterance(Utterance(6.0, 6.5, "here"))
    feed(p, 0, 2.0)  # the camera stopped at 2 s
    assert p.ready(now=6.5) == []  # the audio clock has not passed the end + grace yet
    out = p.ready(now=7.1)
    assert len(out) == 1 and out[0].empty and out[0].stacked().shape == (0,)
    rest = p.flush(now=8.0)
    assert len(rest) == 1 and rest[0].empty
    assert p.stats.without_frames == 2 and p.stats.paired == 0


def test_flush_cuts_last_window_at_now():
    p = Pairer(fps=5, max_frames=32)
    feed(p, 0, 3.0)
    p.add_utterance(Utterance(1.0, 1.4, "the dog"))
    out = p.flush()
    assert len(out) == 1 and out[0].window[1] == pytest.approx(2.8)
    assert len(out[0].items) == 10  # 1.0 .. 2.8, the last frame included


def test_a_transcripts_words_are_heard_words_at_full_confidence():
    from firstwords.edge.heard import HeardWord
    from firstwords.edge.pair import TimedUtterance
    from firstwords.edge.transcripts import parse_srt

    u = parse_srt("1\n00:00:01,000 --> 00:00:02,500\nThat's the BALL!\n")[0]
    assert isinstance(u, TimedUtterance) and u.words == ()
    from firstwords.edge.tokenize import words

    assert u.heard_words() == tuple(HeardWord(w, 1.0, 2.5, 1.0) for w in words("That's the BALL!"))
    assert u.heard_words()[-1] == HeardWord("ball", 1.0, 2.5, 1.0)
    given = (HeardWord("ball", 1.2, 1.6, 0.4),)
    assert TimedUtterance(1.0, 2.5, "ball", words=given).heard_words() == given
