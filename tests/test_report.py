"""firstwords report: sections, self-containment, a real headless-Chromium render, bad input, SVG fallback."""

from __future__ import annotations

import base64
import json
import re
import shutil
import sqlite3
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from firstwords.edge.report import Criterion, build_report
from firstwords.edge.report.png import encode_png, read_ppm

FW = [sys.executable, "-m", "firstwords.edge.cli"]
SECTIONS = ("growth", "words", "maps", "alignment", "accuracy", "facts")


def _run(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([*FW, *args], capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def learned(sample, tmp_path_factory):
    """A memory learned by replaying the sample session (transcript words, media kept), and its run stats."""
    d = tmp_path_factory.mktemp("report")
    mem = d / "memory.db"
    proc = _run("replay", str(sample.session), "--bundle", str(sample.bundle), "--memory", str(mem),
                "--words-from", "transcript", "--keep-media", "--json", "-q")
    assert proc.returncode == 0, proc.stderr
    (d / "run.json").write_text(proc.stdout.strip().splitlines()[-1])
    return d, mem


@pytest.fixture(scope="module")
def report(sample, learned) -> tuple[Path, str]:
    d, mem = learned
    out = d / "report.html"
    proc = _run("report", "--memory", str(mem), "--bundle", str(sample.bundle), "--eval-data",
                str(sample.corpus / "eval.json"), "--session", str(sample.session), "--run-stats",
                str(d / "run.json"), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "report written to" in proc.stdout
    return out, out.read_text(encoding="utf-8")


def _attr_urls(text: str) -> list[str]:
    return re.findall(r'\b(?:src|href)\s*=\s*["\']?([^"\'\s>]*)', text, flags=re.IGNORECASE)


def test_report_has_every_section_and_states_the_criterion(report):
    _, text = report
    for sid in SECTIONS:
        assert f'<section id="{sid}">' in text, sid
    assert "naming strength is at least 0.2" in text and "at least 3 utterances" in text
    assert 'class="thumb"' in text  # --keep-media: thumbnails of remembered moments
    assert "frames dropped" in text  # the run's facts from --run-stats
    # the tiny bundle was exported without the spatial output: the maps section says so instead of a map
    maps = text.split('<section id="maps">')[1].split("</section>")[0]
    assert 'class="warn"' in maps and "re-export" in maps


def test_report_is_self_contained(report):
    _, text = report
    urls = _attr_urls(text)
    assert urls and all(u.startswith("data:") for u in urls), [u[:40] for u in urls if not u.startswith("data:")]
    assert not re.search(r"<script|<link|@import|url\(", text, flags=re.IGNORECASE)
    for u in urls:  # inside the images too (an SVG may refer to the outside)
        payload = base64.b64decode(u.split(",", 1)[1])
        if u.startswith("data:image/svg"):
            assert b"href=\"http" not in payload and b"href='http" not in payload


def chromium_render(html: Path, png: Path, tmp: Path) -> list[str]:
    """Render a page in headless Chromium; returns the console lines it logged."""
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("chromium is not installed (tools/install_system_deps.sh installs it)")
    proc = subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                           "--disable-component-update", "--no-first-run", f"--user-data-dir={tmp / 'chromium'}",
                           "--enable-logging=stderr", "--v=0", f"--screenshot={png}", "--window-size=1100,1600",
                           html.resolve().as_uri()], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0 and png.is_file(), proc.stderr[-2000:]
    return [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]


def _not_blank(png: Path) -> float:
    cv2 = pytest.importorskip("cv2")
    img = cv2.imread(str(png))
    assert img is not None and img.shape[0] > 100
    return float((img.min(axis=2) < 200).mean())  # share of pixels that are not near-white


def test_report_renders_in_headless_chromium(report, tmp_path):
    out, _ = report
    png = tmp_path / "report.png"
    console = chromium_render(out, png, tmp_path)
    assert console == []
    assert _not_blank(png) > 0.02


def test_chromium_check_sees_console_errors_and_blank_pages(tmp_path):
    bad = tmp_path / "bad.html"
    bad.write_text('<html><body><script>console.error("boom")</script></body></html>')
    console = chromium_render(bad, tmp_path / "bad.png", tmp_path)
    assert any("boom" in line for line in console)
    assert _not_blank(tmp_path / "bad.png") < 0.001


def test_svg_fallback_without_matplotlib(sample, learned, tmp_path):
    _, mem = learned
    copy = tmp_path / "memory.db"
    shutil.copy(mem, copy)
    res = build_report(copy, sample.bundle, tmp_path / "r.html", eval_data=sample.corpus / "eval.json",
                       use_matplotlib=False)
    text = (tmp_path / "r.html").read_text()
    svgs = [u for u in _attr_urls(text) if u.startswith("data:image/svg+xml")]
    assert len(svgs) >= 4  # two growth curves, alignment, accuracy bars
    for u in svgs:
        ET.fromstring(base64.b64decode(u.split(",", 1)[1]))  # well-formed
    assert "built-in SVG" in text and res.words > 0


def test_empty_memory_gives_marked_sections(sample, tmp_path):
    from firstwords.edge.bundle import load_bundle
    from firstwords.edge.memory import AssociativeMemory

    dim = load_bundle(sample.bundle).embedding_dim
    AssociativeMemory(tmp_path / "empty.db", dim).close()
    proc = _run("report", "--memory", str(tmp_path / "empty.db"), "--bundle", str(sample.bundle), "-o",
                str(tmp_path / "e.html"))
    assert proc.returncode == 0, proc.stderr
    text = (tmp_path / "e.html").read_text()
    assert text.count('class="warn"') >= 4 and "the memory is empty" in text
    assert "Traceback" not in proc.stderr


def test_bad_inputs_are_clear_errors(sample, learned, tmp_path):
    _, mem = learned
    old = tmp_path / "old.db"
    shutil.copy(mem, old)
    db = sqlite3.connect(old)
    db.execute("UPDATE meta SET value = '0' WHERE key = 'schema_version'")  # a format before version 1
    db.commit()
    db.close()
    cases = {
        "older memory": (["--memory", str(old), "--bundle", str(sample.bundle)], "schema version"),
        "missing eval": (["--memory", str(mem), "--bundle", str(sample.bundle), "--eval-data",
                          str(tmp_path / "nope.json")], "no such eval file"),
        "missing memory": (["--memory", str(tmp_path / "none.db"), "--bundle", str(sample.bundle)], "no memory"),
        "missing bundle": (["--memory", str(mem), "--bundle", str(tmp_path / "nob")], "bundle"),
    }
    for name, (args, needle) in cases.items():
        proc = _run("report", *args, "-o", str(tmp_path / "x.html"))
        assert proc.returncode == 2, (name, proc.stdout, proc.stderr)
        assert proc.stderr.startswith("error: ") and needle in proc.stderr, (name, proc.stderr)
        assert "Traceback" not in proc.stderr, name


def test_known_criterion_is_applied(sample, learned, tmp_path):
    _, mem = learned
    copy = tmp_path / "memory.db"
    shutil.copy(mem, copy)
    loose = build_report(copy, sample.bundle, tmp_path / "a.html", criterion=Criterion(0.0, 1))
    strict = build_report(copy, sample.bundle, tmp_path / "b.html", criterion=Criterion(10.0, 1))
    assert loose.known == loose.words > 0 and strict.known == 0


def test_png_round_trip_through_ppm():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (7, 5, 3), dtype=np.uint8)
    ppm = b"P6\n# a comment\n5 7\n255\n" + img.tobytes()
    assert np.array_equal(read_ppm(ppm), img)
    png = encode_png(img)
    cv2 = pytest.importorskip("cv2")
    back = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1]
    assert np.array_equal(back, img)


def test_word_table_is_capped_and_says_so(sample, tmp_path):
    from firstwords.edge.bundle import load_bundle
    from firstwords.edge.report.bench import synthetic_memory

    dim = load_bundle(sample.bundle).embedding_dim
    mem = synthetic_memory(tmp_path / "big.db", dim, n_words=500, n_episodes=2000)
    res = build_report(mem, sample.bundle, tmp_path / "big.html", max_words=50, criterion=Criterion(0.0, 3))
    text = (tmp_path / "big.html").read_text()
    assert "Showing 50 of 500 words" in text
    assert text.split('<section id="words">')[1].split("</section>")[0].count("<tr>") == 51  # header + 50
    assert res.words == 500 and 0 < res.known < 500  # words heard fewer than 3 times are not known


@pytest.mark.slow
def test_large_memory_report_under_a_minute(sample, tmp_path):
    """10,000 words and 50,000 remembered moments: the report builds in under a minute (tools/bench_report.py)."""
    proc = subprocess.run([sys.executable, "tools/bench_report.py", "--bundle", str(sample.bundle), "--out",
                           str(tmp_path / "r.html")], capture_output=True, text=True, timeout=1200, check=False,
                          cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    figures = json.loads(proc.stdout.strip().splitlines()[-1])
    assert figures["words"] == 10_000 and figures["episodes"] == 50_000
    assert figures["report_seconds"] < 60 and figures["under_a_minute"]
