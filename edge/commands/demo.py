"""firstwords demo: the whole chain on the embedded sample corpus, each step a real command.

sample corpus -> train (compact, a few minutes) -> evaluate -> export an int8 bundle (parity gate) ->
record a sample session -> replay it through the device runtime into a fresh memory -> print what was learned.
Steps whose output already exists are skipped, so a second run goes straight to the replay.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from firstwords.edge.errors import FirstwordsError

HELP = "run the whole chain on the embedded sample corpus: train, export, replay, show what was learned"
EXAMPLE = "firstwords demo --workdir work --train-minutes 3"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workdir", default="work", help="where corpus, checkpoint, bundle, session and "
                                                          "memory go "
                        "(default: work)")
    parser.add_argument("--train-minutes", type=float, default=3.0,
                        help="training budget in minutes on this machine (default: 3)")
    parser.add_argument("--device-config", default="laptop",
                        help="device config (a shipped name or a .toml path) for export and replay "
                             "(default: laptop)")
    parser.add_argument("--session-minutes", type=float, default=10.0,
                        help="minutes of the recorded session to replay (spoken soundtrack -> VAD -> speech "
                             "recognition; default: 10)")
    parser.add_argument("--fresh", action="store_true", help="delete the workdir first and redo every step")


def _step(title: str, cmd: list[str], done: Path | None) -> None:
    if done is not None and done.exists():
        print(f"\n== {title}: already done ({done}); skipping", flush=True)
        return
    print(f"\n== {title}\n$ {' '.join(cmd)}", flush=True)
    t0 = time.monotonic()
    proc = subprocess.run(cmd, check=False)  # the exit code is turned into a clear error below
    if proc.returncode != 0:
        raise FirstwordsError(f"demo step '{title}' failed (exit {proc.returncode}); the command is shown "
                              "above — "
                              "run it by hand to see the whole error, or rerun 'firstwords demo --fresh'")
    print(f"   ({time.monotonic() - t0:.0f} s)", flush=True)


def naming_summary(memory: Path, bundle: Path, corpus: Path, eval_set: list[dict]) -> tuple[float, list[str]]:
    """Print how often the memory's first word for a never-seen image is its category (all its words compete,
    function words included), per category too; returns the overall share and the first word per image."""
    from firstwords.edge.bundle import load_bundle
    from firstwords.edge.encode import Encoder
    from firstwords.edge.images import encode_image_files
    from firstwords.edge.memory import AssociativeMemory

    enc = Encoder(load_bundle(bundle))
    emb = encode_image_files(enc, [corpus / e["frame_filename"] for e in eval_set])
    with AssociativeMemory.open_existing(memory) as mem:
        first = [(mem.name(x, k=1) or [("", 0.0)])[0][0] for x in emb]
        n_words = len(mem.words())
    labels = [e["category"] for e in eval_set]
    cats = sorted(set(labels))
    right = np.array([a == b for a, b in zip(first, labels)])
    print(f"its first word for {len(labels)} never-seen images is the right one {right.mean():.0%} of the "
          "time "
          f"(all {n_words} words it heard compete; chance among the {len(cats)} object words "
          f"{1 / len(cats):.0%})")
    print("   " + "  ".join(f"{c} {right[[lab == c for lab in labels]].mean():.0%}" for c in cats))
    return float(right.mean()), first


def run(args: argparse.Namespace) -> int:
    work = Path(args.workdir).resolve()
    if args.fresh and work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    py = sys.executable
    fw = [py, "-m", "firstwords.edge.cli"]
    corpus, ckpt, bundle = work / "corpus", work / "ckpt", work / "bundle"
    session, memory = work / "session", work / "memory.db"
    t0 = time.monotonic()

    _step("1/7 build the sample corpus (real Fashion-MNIST objects on real photos)",
          [py, "-m", "firstwords.export.sample_corpus", "--out", str(corpus)], corpus / "corpus_info.json")
    # An interrupted earlier run left last/ without DONE: carry on from it rather than refuse.
    resume = ["--resume"] if (ckpt / "last").exists() and not (ckpt / "DONE").exists() else []
    _step("2/7 train the compact dual encoder (frozen pretrained EfficientNet-Lite0 + projection)",
          fw + ["train", "--config", "compact", "--data", str(corpus / "train.json"), "-o", str(ckpt),
                "--max-minutes", str(args.train_minutes), *resume], ckpt / "DONE")
    _step("3/7 evaluate the checkpoint (CVCL's 4-way protocol on never-seen instances)",
          fw + ["eval", str(ckpt), "--data", str(corpus / "eval.json"), "--plot",
                str(work / "eval_4way.png")], None)
    _step("4/7 export an int8 ONNX bundle for the device (parity gate, speech language model)",
          fw + ["export", str(ckpt), "-o", str(bundle), "--config", args.device_config,
                "--eval-data", str(corpus / "eval.json"), "--speech-lm"], bundle / "manifest.json")
    _step("5/7 record a sample session (video + spoken soundtrack + SRT)",
          [py, "-m", "firstwords.export.sample_session", "--corpus", str(corpus), "--out", str(session),
           "--max-minutes", str(args.session_minutes)],
          session / "session.json")
    from firstwords.edge.asr_adapt import adaptation_path, find_tools
    from firstwords.edge.errors import MissingExtraError

    meta = json.loads((session / "session.json").read_text())
    voices = (meta.get("speech") or {}).get("voices")
    try:
        find_tools()
        if not voices:
            raise MissingExtraError("the session has no spoken soundtrack (no speech synthesiser installed)")
        enrolment = work / "enrolment"
        _step("6/7 the home's speakers (here: the session's synthetic voices) read a script of its words",
              fw + ["enrol", str(enrolment), "--bundle", str(bundle), "--voices", ",".join(voices)],
              adaptation_path(memory))
        _step("6/7 fit speech recognition to their voices from those readings",
              fw + ["adapt", "--enrolment", str(enrolment), "--bundle", str(bundle), "--memory", str(memory),
                    "--config", args.device_config], adaptation_path(memory))
    except MissingExtraError as e:
        print(f"\n== 6/7 speaker adaptation skipped: {e}")
    if memory.exists():
        for suffix in ("", "-wal", "-shm"):
            Path(str(memory) + suffix).unlink(missing_ok=True)
    _step("7/7 replay the session through the device runtime into a fresh memory",
          fw + ["replay", str(session), "--bundle", str(bundle), "--memory", str(memory), "--speed", "max",
                "--config", args.device_config], None)

    print("\n== what the device learned")
    eval_set = json.loads((corpus / "eval.json").read_text())["data"]
    naming_summary(memory, bundle, corpus, eval_set)
    # a few examples, drawn at random (seeded) rather than picked: right and wrong answers both show
    rng = random.Random(0)
    for category in rng.sample(sorted({e["category"] for e in eval_set}), 4):
        item = rng.choice([e for e in eval_set if e["category"] == category])
        print(f"-- a never-seen {category!r}: {item['frame_filename']}", flush=True)
        subprocess.run(fw + ["ask", "--memory", str(memory), "--bundle", str(bundle),
                             "--image", str(corpus / item["frame_filename"]), "-k", "3"], check=False)
    from firstwords.edge.report import build_report

    rep = build_report(memory, bundle, work / "report.html", eval_data=corpus / "eval.json", session=session)
    print(f"\nreport of what the device learned: {rep.path} (open it in a browser)")
    print(f"\ndemo finished in {time.monotonic() - t0:.0f} s; everything is in {work}")
    return 0
