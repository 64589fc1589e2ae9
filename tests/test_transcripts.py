"""Transcript parsers: known files parse to the right times; arbitrary text/bytes raise DataError or
nothing."""

from __future__ import annotations

import pytest
from firstwords.edge.errors import DataError
from firstwords.edge.transcripts import (
    TimedUtterance,
    format_srt,
    format_webvtt,
    load_transcript,
    parse_cvcl_csv,
    parse_srt,
    parse_webvtt,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

SRT = """1
00:00:01,000 --> 00:00:02,500
look at the <i>shoe</i>

2
00:00:04,250 --> 00:00:05,000 X1:10 X2:20
where is
the ball
"""

VTT = """WEBVTT - sample

NOTE a comment
spanning lines

intro
00:01.000 --> 00:02.500 align:start
<v Mom>look at the shoe</v>

01:00:04.250 --> 01:00:05.000
&lt;laughs&gt; ball!
"""

CSV = """Time,Video Name,Utterance,Speaker
0:05,S_20130101_0001,look at the ball,Mom
0:05,S_20130101_0001,ball!,Mom
0:12,S_20130101_0001,"yes, the ball",Dad
,S_20130101_0001,no time here,Mom
1:02:03.5,S_20130101_0002,late,
"""


def test_srt_times_text_and_tags():
    u = parse_srt(SRT)
    assert [(x.start, x.end) for x in u] == [(1.0, 2.5), (4.25, 5.0)]
    assert u[0].text == "look at the shoe" and u[1].text == "where is the ball"


def test_webvtt_voice_notes_and_hours():
    u = parse_webvtt(VTT.encode("utf-8"))
    assert len(u) == 2
    assert (u[0].start, u[0].end, u[0].text, u[0].speaker) == (1.0, 2.5, "look at the shoe", "Mom")
    assert u[1].start == pytest.approx(3604.25) and u[1].text == "<laughs> ball!"


def test_webvtt_needs_header():
    with pytest.raises(DataError, match="line 1"):
        parse_webvtt("00:01.000 --> 00:02.000\nhi\n")


def test_srt_bad_timing_names_line():
    with pytest.raises(DataError, match="line 6"):
        parse_srt("1\n00:00:01,000 --> 00:00:02,000\nok\n\n2\n00:00:xx,000 --> 00:00:03,000\nbad\n")
    with pytest.raises(DataError, match="before it starts"):
        parse_srt("1\n00:00:03,000 --> 00:00:02,000\nbackwards\n")


def test_cvcl_csv_times_ends_and_skips():
    u = parse_cvcl_csv(CSV)
    assert [x.text for x in u] == ["look at the ball", "ball!", "yes, the ball", "late"]
    assert [x.start for x in u] == [5.0, 5.0, 12.0, 3723.5]
    assert u[0].end == 12.0 and u[1].end == 12.0  # next later start in the same video
    assert u[2].end == 15.0 and u[3].end == 3726.5  # last of its video: start + last_duration
    assert u[0].speaker == "Mom" and u[3].speaker is None and u[3].video == "S_20130101_0002"
    assert [x.text for x in parse_cvcl_csv(CSV, video="S_20130101_0002")] == ["late"]


def test_cvcl_csv_saycam_reading_matches_cvcl():
    # CVCL: "12.5" = 12 min 50 s, "1:5" = 1 min 50 s, a range keeps its start, > 2000 s is dropped
    text = "Time,Video Name,Utterance,Speaker\n12.5,v,a,M\n1:5,v,b,M\n2:03-2:10,v,c,M\n40:00,v,d,M\n"
    u = parse_cvcl_csv(text, time_format="saycam")
    assert [(x.text, x.start) for x in u] == [("b", 110.0), ("c", 123.0), ("a", 770.0)]


def test_cvcl_csv_errors():
    with pytest.raises(DataError, match="header"):
        parse_cvcl_csv("when,what\n1,hi\n")
    with pytest.raises(DataError, match="line 3"):
        parse_cvcl_csv("Time,Utterance\n0:01,ok\nsoon,bad\n")
    with pytest.raises(DataError, match="NUL"):
        parse_cvcl_csv("Time,Utterance\n0:01,o\x00k\n")
    with pytest.raises(DataError, match="decode"):
        parse_cvcl_csv(b"Time,Utterance\n0:01,\xff\xfe\n")


def test_load_transcript_by_extension(tmp_path):
    (tmp_path / "a.srt").write_text(SRT)
    (tmp_path / "a.vtt").write_text(VTT)
    (tmp_path / "a.csv").write_text(CSV)
    assert len(load_transcript(tmp_path / "a.srt")) == 2
    assert len(load_transcript(tmp_path / "a.vtt")) == 2
    assert len(load_transcript(tmp_path / "a.csv", time_format="auto")) == 4
    with pytest.raises(DataError, match="unknown transcript type"):
        load_transcript(tmp_path / "a.txt")
    with pytest.raises(DataError, match="cannot read"):
        load_transcript(tmp_path / "missing.srt")


# ---------------------------------------------------------------------------------- property-based

PARSERS = [parse_srt, parse_webvtt, parse_cvcl_csv,
           lambda d: parse_cvcl_csv(d, time_format="saycam")]
# text made of the characters that matter to these formats, so that near-valid files are common
fragments = st.sampled_from(["\n", "\n\n", "\r\n", " --> ", "00:", "01", ":", ",", ".", "-", "WEBVTT", "NOTE",
                             "<v Mom>", "</v>", "<i>", "&amp;", "1", "99999999999",
                             ("Time,Video Name,Utterance,Speaker\n"), '"', "ball", "\ufeff", "\x00", "é",
                             "12.5"])
near_valid = st.lists(fragments, max_size=40).map("".join)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.one_of(st.text(max_size=300), near_valid, st.binary(max_size=300),
                      near_valid.map(lambda s: s.encode("utf-8"))))
def test_parsers_raise_only_data_error(data):
    for parse in PARSERS:
        try:
            out = parse(data)
        except DataError as e:
            assert str(e)  # a message, which names the file part
            continue
        for u in out:
            assert isinstance(u, TimedUtterance)
            assert 0 <= u.start <= u.end and u.text == u.text.strip() and u.text


texts = st.text(alphabet=st.sampled_from("abcdefghij klmnop'!?,"), min_size=1, max_size=30).filter(
    lambda s: s.strip() and not s.strip().isdigit())
ms = st.integers(min_value=0, max_value=10 * 3600 * 1000)  # times on the millisecond grid both formats use


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(ms, st.integers(0, 60_000), texts), max_size=8))
def test_format_then_parse_round_trips(items):
    utts = sorted([TimedUtterance(t / 1000, (t + d) / 1000, " ".join(x.split())) for t, d, x in items],
                  key=lambda u: (u.start, u.end))
    for fmt, parse in ((format_srt, parse_srt), (format_webvtt, parse_webvtt)):
        back = parse(fmt(utts))
        assert [(u.start, u.end, u.text) for u in back] == [(u.start, u.end, u.text) for u in utts]


def test_cvcl_csv_the_one_parser_for_training_and_replay(tmp_path):
    """CVCL's raw transcript CSV as export/ once read it with a second parser: start times as seconds, M:SS or
    a range (its end kept); an empty utterance skipped; a time that is not a time said, with its line."""
    from firstwords.edge.transcripts import load_transcript

    p = tmp_path / "t.csv"
    p.write_text("Time,Video Name,Utterance,Speaker\n"
                 "0:05,S_001.mp4,look at the ball,M\n"
                 "1:02-1:04,S_001.mp4,where's the cat?,F\n"
                 "12.5,S_001.mp4,,M\n", encoding="utf-8")
    rows = load_transcript(p)
    assert [(r.start, r.end, r.text, r.speaker, r.video) for r in rows] == [
        (5.0, 15.0, "look at the ball", "M", "S_001.mp4"), (62.0, 64.0, "where's the cat?", "F", "S_001.mp4")]
    p.write_text("Time,Video Name,Utterance,Speaker\n??,S_001.mp4,all done,M\n", encoding="utf-8")
    with pytest.raises(DataError, match="line 2.*cannot read time"):
        load_transcript(p)
    p.write_text("When,Text\n1,hi\n")
    with pytest.raises(DataError, match="Time, Video Name, Utterance, Speaker"):
        load_transcript(p)
