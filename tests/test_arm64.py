"""The device path on arm64 by emulation (tools/check_arm64.py), when this machine allows it.

Needs root, qemu-user-static + binfmt_misc + debootstrap, a trained checkpoint and its corpus (the demo's
work/ckpt and work/corpus, or $FIRSTWORDS_ARM64_CKPT / $FIRSTWORDS_ARM64_CORPUS; $FIRSTWORDS_ARM64_BUNDLES for
ready u8s8/ and s8s8/ bundles), and network access for pip inside the root. Minutes, not seconds: slow.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from firstwords.edge.emulation import host_problem

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def test_arm64_install_numerics_and_behaviour_match_x86(tmp_path):
    problem = host_problem()
    if problem:
        pytest.skip(f"arm64 emulation not possible here: {problem}")
    ckpt = Path(os.environ.get("FIRSTWORDS_ARM64_CKPT", ROOT / "work" / "ckpt"))
    corpus = Path(os.environ.get("FIRSTWORDS_ARM64_CORPUS", ROOT / "work" / "corpus"))
    if not (corpus / "eval.json").exists() or not (
        (ckpt / "DONE").exists() or os.environ.get("FIRSTWORDS_ARM64_BUNDLES")
    ):
        pytest.skip(
            f"no trained checkpoint / corpus at {ckpt} and {corpus}: run 'make demo' or set "
            "FIRSTWORDS_ARM64_CKPT and FIRSTWORDS_ARM64_CORPUS"
        )
    cmd = [
        sys.executable,
        str(ROOT / "tools" / "check_arm64.py"),
        "--ckpt",
        str(ckpt),
        "--corpus",
        str(corpus),
        "--work",
        str(tmp_path / "arm64"),
        "--root",
        os.environ.get("FIRSTWORDS_ARM64_ROOT", "/work/arm64root"),
    ]
    if os.environ.get("FIRSTWORDS_ARM64_BUNDLES"):
        cmd += ["--bundles", os.environ["FIRSTWORDS_ARM64_BUNDLES"]]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600, check=False)
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["arm64_install_ok"] and out["torch_absent"], proc.stdout[-3000:] + proc.stderr[-3000:]
    assert out["image_cos_min"] >= 0.995, out
    for cpu, accs in out["acc_4way_arm"].items():
        for q, acc in accs.items():
            assert abs(acc - out["acc_4way_x86"][q]) <= 0.01, (cpu, q, acc, out["acc_4way_x86"][q])
    assert set(out["acc_4way_arm"]) == {"cortex-a72", "cortex-a76", "max"}
    assert out["replay_ok"] and out["ask_ok"] and out["doctor_ok"], out
    assert proc.returncode == 0, proc.stderr[-3000:]
