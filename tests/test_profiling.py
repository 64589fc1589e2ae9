"""edge.profiling, profile_stats, memory_probe, growth and the profiling tools: statistics, budget comparison,
looped sessions, fresh-process memory probes and the growth sweep, over a real tiny bundle
(firstwords.export.tiny_dual) and real onnxruntime / SQLite.

No wall-clock figure is asserted: only that the figures exist, have the right shape, and that the comparison
with a budget goes the way a budget of ~0 or ~infinity forces it to.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
from firstwords.edge import growth, memory_probe, profile_stats, profiling
from firstwords.edge.config import config_dir, parse_device_config
from firstwords.edge.errors import InputError

torch = pytest.importorskip("torch")
from firstwords.export.tiny_dual import DIM, make_bundle

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    torch.set_num_threads(1)
    return make_bundle(tmp_path_factory.mktemp("prof") / "bundle", seed=2)


def config(**budget) -> profiling.DeviceConfig:
    data = tomllib.loads((config_dir() / "laptop.toml").read_text())
    data["model"]["threads"] = 1
    data["budget"].update(budget)
    return parse_device_config(data, "test-laptop")


def noise_speech(seconds: float = 4.0) -> profiling.SpeechSample:
    """Quiet noise with loud bursts: enough for the VAD's cost (no recogniser needed)."""
    rng = np.random.default_rng(0)
    x = rng.normal(0, 0.002, int(seconds * 16000)).astype(np.float32)
    for s in (0.5, 2.0):
        a = int(s * 16000)
        x[a:a + 8000] += (0.3 * np.sin(np.arange(8000) * 0.05)).astype(np.float32)
    return profiling.SpeechSample(x, [], "noise")


# ------------------------------------------------------------------------------------------------ statistics

def test_median_p95_and_empty():
    med, p95 = profile_stats.median_p95(list(range(1, 101)))
    assert med == pytest.approx(50.5)
    assert 95 <= p95 <= 96
    with pytest.raises(InputError):
        profile_stats.median_p95([])


@pytest.mark.parametrize("power", [0.0, 0.5, 1.0, 2.0])
def test_fit_exponent_recovers_power_laws(power):
    xs = [1, 10, 60]
    assert profile_stats.fit_exponent(xs, [3.0 * x ** power for x in xs]) == pytest.approx(power, abs=1e-9)


def test_fit_exponent_needs_two_x_values():
    with pytest.raises(InputError):
        profile_stats.fit_exponent([5, 5], [1, 2])


def test_growth_verdicts():
    assert profile_stats.growth_verdict(2.0) == "SUPER-LINEAR"
    assert profile_stats.growth_verdict(1.1) == "linear"
    assert profile_stats.growth_verdict(0.1) == "sub-linear"


def test_stage_status_against_budget():
    cfg = config()
    ok = profiling.stage_result("image_encode", [1.0, 1.0, 1.1], cfg.budget)
    assert ok.budget == cfg.budget.image_encode_ms and ok.status == "ok"
    over = profiling.stage_result("image_encode", [50.0, 60.0, 70.0], cfg.budget)
    assert over.status == "OVER"
    tail = profiling.stage_result("image_encode", [1.0] * 19 + [500.0], cfg.budget)
    assert tail.status == "p95 over"
    assert profiling.skipped("asr", cfg.budget, "no speech").status == "skipped"
    assert json.loads(json.dumps(over.to_dict()))["status"] == "OVER"


# ------------------------------------------------------------------------------------------------ latency

def test_profile_latency_compares_every_stage_with_its_budget(bundle, tmp_path):
    # A budget of ~0 is always exceeded, a huge one never: the marking follows the budget, not the machine.
    cfg = config(image_encode_ms=1e-9, memory_query_ms=1e6)
    report = profiling.profile_latency(cfg, bundle, runs=3, memory_words=50, db_dir=tmp_path,
                                       stages=[s for s in profiling.STAGES if s != "asr"],
                                       speech=noise_speech())
    stages = {s.stage: s for s in report.stages}
    assert list(stages) == [s for s in profiling.STAGES if s != "asr"]  # in pipeline order
    for s in stages.values():
        assert s.median is not None and s.median >= 0 and s.p95 >= s.median
        assert s.budget == getattr(cfg.budget, profile_stats.BUDGET_KEYS[s.stage][0])
    assert stages["vad"].runs > 50  # one value per 32 ms block of the 4 s sample
    assert stages["image_encode"].status == "OVER"
    assert stages["memory_query"].status == "ok"
    assert "image_encode" in report.over and "memory_query" not in report.over
    d = json.loads(json.dumps(report.to_dict()))
    assert d["stages"]["image_encode"]["status"] == "OVER"
    # the bundle is 32 px fp32, the config wants 128 px int8: said so
    assert any("differs" in n for n in report.notes)
    table = profiling.format_latency_table(report)
    assert "OVER" in table and "over budget: image_encode" in table


def test_profile_latency_skips_asr_when_the_config_uses_transcripts(bundle):
    data = tomllib.loads((config_dir() / "laptop.toml").read_text())
    data["audio"]["recognizer"] = "transcript"
    cfg = parse_device_config(data, "t")
    report = profiling.profile_latency(cfg, bundle, runs=3, stages=["asr"], speech=noise_speech())
    assert report.stages[0].status == "skipped" and "transcript" in report.stages[0].note


def test_profile_latency_rejects_bad_arguments(bundle):
    with pytest.raises(InputError, match="unknown stage"):
        profiling.profile_latency(config(), bundle, runs=3, stages=["warp_drive"])
    with pytest.raises(InputError, match="runs"):
        profiling.profile_latency(config(), bundle, runs=1)


def test_known_word_batches_follow_the_learner():
    vocab = {"ball", "dog"}
    assert profiling.known_word_batches(["Look at the BALL!", "no words here", "dog and ball"],
                                        vocab.__contains__) == [["ball"], ["ball", "dog"]]


def test_pairing_and_memory_measurements(tmp_path):
    assert len(profiling.measure_pairing(5.0, 32, DIM, runs=4)) == 4
    upd, qry = profiling.measure_memory(DIM, 120, runs=4, frames=8, db_dir=tmp_path)
    assert len(upd) == 4 and len(qry) == 4 and min(upd) > 0
    assert list(tmp_path.iterdir()) == []  # the temporary database is gone


# ------------------------------------------------------------------------------------------------ looping

def test_looped_utterances_repeat_with_the_period():
    from firstwords.edge.pair import Utterance

    utts = [Utterance(1.0, 2.0, "a ball"), Utterance(5.0, 6.0, "a dog")]
    out = memory_probe.looped_utterances(utts, period=10.0, seconds=25.0)
    assert [u.start for u in out] == [1.0, 5.0, 11.0, 15.0, 21.0]
    assert [u.text for u in out][:3] == ["a ball", "a dog", "a ball"]
    with pytest.raises(InputError):
        memory_probe.looped_utterances(utts, period=0.0, seconds=5.0)


def test_looped_frames_keep_time_running(sample):
    video, _, duration = memory_probe.session_files(sample.session)
    times = [t for t, _ in memory_probe.looped_frames(video, 5.0, 2.5 * duration)]
    assert np.all(np.diff(times) > 0)
    assert times[-1] < 2.5 * duration <= times[-1] + 1.0
    assert len(times) == pytest.approx(2.5 * duration * 5.0, rel=0.05)


def test_replay_cost_figures_scale_with_session_length(sample, tmp_path):
    """Twice the (looped) session: twice the frames encoded and utterances learned."""
    from firstwords.edge.encode import Encoder
    from firstwords.edge.runtime import build_runtime

    _, _, duration = memory_probe.session_files(sample.session)
    enc = Encoder(sample.bundle, threads=1)
    counts = []
    for k, factor in enumerate((1.0, 2.0)):
        with build_runtime("laptop", enc, tmp_path / f"m{k}.sqlite") as rt:
            mem = rt.memory
            rep = memory_probe.replay_looped(rt, sample.session, factor * duration / 60.0)
            assert not rep.stats["errors"]
            counts.append((rep.stats["frames_encoded"], rep.stats["utterances"], mem.stats()["episodes"]))
    (f1, u1, e1), (f2, u2, e2) = counts
    assert f1 > 0 and u1 > 0
    assert f2 == pytest.approx(2 * f1, rel=0.05)
    assert u2 == pytest.approx(2 * u1, abs=2)
    assert e2 == pytest.approx(2 * e1, abs=2)


# ----------------------------------------------------------------------------------------------- memory probe

def test_probe_in_a_fresh_process_breaks_memory_down(bundle):
    p = memory_probe.run_probe(memory_probe.ProbeSpec(bundle=str(bundle), threads=1, words=300))
    names = [s["step"] for s in p["steps"]]
    assert names[0] == "python + numpy" and names[-1] == "+ memory with 300 words"
    assert "+ both ONNX sessions loaded" in names
    assert p["peak_mb"] >= max(s["rss_mb"] for s in p["steps"]) > 0
    assert p["steps"][-1]["matrix_mb"] > 0
    rows = memory_probe.breakdown(p)
    assert sum(inc for _, _, inc in rows) == pytest.approx(rows[-1][1], abs=0.11)
    assert "peak (VmHWM)" in memory_probe.format_memory_table(p, 1e6)
    assert "OVER" in memory_probe.format_memory_table(p, 1.0)


def test_probe_measures_the_audio_path_with_the_recogniser_loaded(sample):
    pytest.importorskip("pocketsphinx")
    p = memory_probe.run_probe(memory_probe.ProbeSpec(bundle=str(sample.bundle), threads=1, words=100,
                                                      session=str(sample.session), hear_seconds=6.0))
    assert p["steps"][-1]["step"] == "+ recogniser, 6 s of speech heard"
    assert p["heard"]["words"] > 0  # the soundtrack's speech was recognised, not just the model loaded
    # a decoder and its language model are the audio path's largest part
    assert p["steps"][-1]["hwm_mb"] > p["steps"][-2]["hwm_mb"] + 20


def test_probe_applies_onnxruntime_memory_options(bundle):
    opts = memory_probe.OrtMemoryOptions(arena=False, prepacking=False)
    assert opts.label == "no arena + no prepacking"
    p = memory_probe.run_probe(memory_probe.ProbeSpec(bundle=str(bundle), threads=1,
                                                      ort=dataclasses.asdict(opts)))
    assert p["ort"] == "no arena + no prepacking"


def test_probe_failure_is_a_clear_error(tmp_path):
    with pytest.raises(profiling.DataError, match="measuring process failed"):
        memory_probe.run_probe(memory_probe.ProbeSpec(bundle=str(tmp_path / "missing")))


def test_read_status_has_peak():
    st = memory_probe.read_status_mb()
    assert st["VmHWM"] >= st["VmRSS"] > 0


# ------------------------------------------------------------------------------------------------ growth

def test_sweeps(bundle, tmp_path):
    upd, qry = growth.sweep_memory_size(DIM, [50, 200], runs=3, frames=4, db_dir=tmp_path)
    thr = growth.sweep_threads(bundle, [1, 2], runs=3)
    size = growth.sweep_input_size({32: bundle}, threads=1, runs=3)
    for s in (upd, qry, thr):
        assert len(s.ys) == 2 and all(y > 0 for y in s.ys)
        assert s.exponent is not None
    for s in (upd, qry):
        assert json.loads(json.dumps(s.to_dict()))["verdict"] in ("sub-linear", "linear", "SUPER-LINEAR")
    assert thr.verdict.startswith("speed-up")
    assert size.exponent is None  # one point: no fit
    assert "exponent" in growth.format_sweeps([upd, qry, thr, size])


# ------------------------------------------------------------------------------------------------ the tools

def _last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


def _run_tool(name: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "tools" / f"{name}.py"), *args], capture_output=True,
                          text=True, timeout=300, check=False)


def test_profile_latency_tool_prints_table_then_json(bundle):
    proc = _run_tool("profile_latency", "--config", "laptop", "--bundle", str(bundle), "--runs", "3",
                     "--threads", "1", "--words", "50", "--stages", "frame_preprocess,image_encode,pairing")
    out = proc.stdout
    assert proc.returncode == 0, proc.stderr
    assert "stage" in out.splitlines()[1] and "budget" in out.splitlines()[1]
    figures = _last_json(out)
    assert set(figures["stages"]) == {"frame_preprocess", "image_encode", "pairing"}
    assert figures["threads"] == 1


def test_profile_latency_tool_missing_bundle_is_an_error(tmp_path):
    proc = _run_tool("profile_latency", "--config", "laptop", "--bundle", str(tmp_path / "nope"))
    assert proc.returncode == 2 and "no such bundle" in proc.stderr


def test_profile_memory_tool(bundle):
    proc = _run_tool("profile_memory", "--config", "rpi-zero-2w", "--bundle", str(bundle), "--words", "200",
                     "--threads", "1", "--no-variants")
    assert proc.returncode == 0, proc.stderr
    figures = _last_json(proc.stdout)
    assert figures["budget_mb"] == 250.0 and figures["words"] == 200
    assert figures["peak_mb"] > figures["breakdown"]["python_baseline_mb"] > 0
    assert figures["breakdown"]["memory_matrix_mb"] > 0


def test_profile_growth_tool_quick(bundle, tmp_path):
    proc = _run_tool("profile_growth", "--config", "laptop", "--bundle", str(bundle), "--quick", "--out",
                     str(tmp_path), "--words", "50,150", "--threads", "1", "--runs", "3",
                     "--skip", "length,size")
    assert proc.returncode == 0, proc.stderr
    figures = _last_json(proc.stdout)
    assert [s["metric"] for s in figures["sweeps"]] == ["memory_update", "memory_query", "image_encode"]
    assert (tmp_path / "growth.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((tmp_path / "growth.json").read_text())["sweeps"] == figures["sweeps"]


@pytest.mark.slow
def test_profile_growth_tool_session_length(sample, tmp_path):
    proc = _run_tool("profile_growth", "--config", "laptop", "--bundle", str(sample.bundle), "--session",
                     str(sample.session), "--out", str(tmp_path), "--minutes", "0.5,1,2", "--skip",
                     "memory,size,threads")
    assert proc.returncode == 0, proc.stderr
    figures = _last_json(proc.stdout)
    sweep = figures["sweeps"][0]
    assert sweep["variable"] == "session length" and len(sweep["y"]) == 3


def test_profiling_imports_no_torch():
    import subprocess

    code = ("import sys, firstwords.edge.profiling, firstwords.edge.memory_probe, firstwords.edge.growth, "
            "firstwords.edge.commands.profile, firstwords.edge.commands.doctor; print('torch' in "
            "sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "False"
