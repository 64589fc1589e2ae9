"""The device path on arm64 by emulation: install, numerics and behaviour (not time) on Pi 4 / Pi 5 CPUs.

Builds (or reuses) an arm64 Debian root with debootstrap + qemu-user-static, installs the built wheel with the
device extras as a Pi user would (no torch), then under QEMU_CPU=cortex-a72 (Pi 4), cortex-a76 (Pi 5) and
max: encodes fixed eval frames and words with U8S8 and S8S8 bundles and compares them with x86 (cosine,
4-way accuracy on the same trials), replays a 1-minute session transcript into a memory, asks it, and runs
`firstwords doctor --config rpi4` / `rpi5`; then installs Debian's arm64 sphinxtrain, sphinxbase-utils and
pocketsphinx and runs `firstwords adapt --enrolment` on readings made on the host, comparing the adapted means
with x86's. Emulated timings say nothing about a board and are not reported.
Needs root and binfmt_misc. Human table, then one JSON line.

    sudo .venv/bin/python tools/check_arm64.py --ckpt work/ckpt --corpus work/corpus --root /work/arm64root
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path

from firstwords.edge import emulation as em


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", default="work/ckpt", help="checkpoint to export the two int8 bundles from")
    ap.add_argument("--corpus", default="work/corpus", help="corpus folder with eval.json and timeline.json")
    ap.add_argument(
        "--bundles", help="folder holding u8s8/ and s8s8/ bundles (default: exported into --work)"
    )
    ap.add_argument("--root", default="/work/arm64root", help="arm64 root (built when missing, else reused)")
    ap.add_argument("--work", default="work/arm64", help="host folder for bundles, inputs and x86 outputs")
    ap.add_argument("--cpus", default="cortex-a72,cortex-a76,max", help="QEMU_CPU models, comma-separated")
    ap.add_argument("--images", type=int, default=120, help="eval frames encoded per run (default: 120)")
    ap.add_argument("--replay-minutes", type=float, default=1.0, help="session length replayed (default: 1)")
    ap.add_argument("--mirror", default="http://deb.debian.org/debian", help="Debian mirror for debootstrap")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind: the root's mounts are released
    t0 = time.monotonic()
    work = Path(args.work).resolve()
    problem = em.host_problem()
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    out: dict = {"arm64_install_ok": False, "torch_absent": False}
    try:
        root = em.ensure_root(Path(args.root), args.mirror, log=print)
        bundles = em.ensure_bundles(Path(args.ckpt), Path(args.corpus), work, args.bundles, log=print)
        inputs = em.prepare_inputs(Path(args.corpus), work, args.images, args.replay_minutes, log=print)
        out.update(em.install_wheel(root, work, log=print))
        if out["arm64_install_ok"]:
            out.update(em.compare_all(root, bundles, inputs, work, args.cpus.split(","), log=print))
            out.update(em.compare_adaptation(root, bundles["u8s8"], work, args.cpus.split(",")[0], log=print))
    except em.EmulationError as e:
        print(f"error: {e}", file=sys.stderr)
        out["error"] = str(e).splitlines()[0][:300]
    out["seconds"] = round(time.monotonic() - t0, 1)
    print()
    print(em.table(out))
    ok = em.passed(out)
    out["passed"] = ok
    print(json.dumps(out))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
