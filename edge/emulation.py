"""The device path on arm64 by emulation (tools/check_arm64.py): it proves install, numerics, behaviour.

Host side (root, x86): an arm64 Debian root made by debootstrap, run through qemu-user-static (binfmt_misc);
the built wheel installed into a venv inside it with the device extras, exactly as on a Pi; then the same
`probe` (below) runs on x86 and inside the root under each QEMU_CPU model, and the embeddings are compared.
Inside the root only the installed package runs: `python -m firstwords.edge.emulation probe ...`.

/sys is never bound into the root: onnxruntime's CPU detection then misreads the host's cpuinfo and crashes
under qemu. CPU features are read with getauxval (what the emulated CPU model really offers). Timings under
emulation (hundreds of ms per frame) say nothing about a board and are not reported.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from firstwords.edge.errors import FirstwordsError

EXTRAS = "camera,audio,speech"  # the device extras (README: "Install for a device"); never train
PACKAGES = "python3,python3-venv,python3-pip,libportaudio2,ca-certificates"
VENV = "/opt/firstwords/venv"
OPT = "/opt/firstwords"
CA = "/etc/ssl/certs/ca-certificates.crt"
BUNDLES = ("u8s8", "s8s8")
Log = Callable[[str], None]


class EmulationError(FirstwordsError):
    """A step of the arm64 check failed; the message names the step and shows its output."""


def _run(cmd: Sequence[str], what: str, timeout: float = 1800, env: dict | None = None,
         check: bool = True) -> subprocess.CompletedProcess:
    try:
        proc = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, env=env,
                              check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise EmulationError(f"{what} failed: {e}") from e
    if check and proc.returncode != 0:
        raise EmulationError(f"{what} failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stdout[-1500:]}\n"
                             f"{proc.stderr[-2500:]}")
    return proc


def host_problem() -> str | None:
    """None when this machine can run arm64 binaries (enabling binfmt's qemu-aarch64 if needed), else why."""
    if os.geteuid() != 0:
        return "needs root (debootstrap, chroot, binfmt_misc)"
    for tool in ("debootstrap", "qemu-aarch64-static", "update-binfmts", "chroot"):
        if shutil.which(tool) is None:
            return f"{tool} is missing: apt-get install qemu-user-static binfmt-support debootstrap"
    binfmt = Path("/proc/sys/fs/binfmt_misc")
    if not (binfmt / "status").exists():
        subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(binfmt)], capture_output=True,
                       check=False)
    if not (binfmt / "qemu-aarch64").exists():
        subprocess.run(["update-binfmts", "--enable", "qemu-aarch64"], capture_output=True, check=False)
    entry = binfmt / "qemu-aarch64"
    if not entry.exists() or not entry.read_text().startswith("enabled"):
        return ("binfmt_misc has no enabled qemu-aarch64 entry (mount -t binfmt_misc binfmt_misc "
                "/proc/sys/fs/binfmt_misc; update-binfmts --enable qemu-aarch64); a container may forbid it")
    return None


def unmount_under(root: Path) -> None:
    """Unmount whatever is mounted inside `root` (left by an interrupted run); refuse to go on otherwise, so
    that removing a half-built root can never delete through a bind mount of the host's /dev."""
    prefix = str(root.resolve()) + "/"
    mounts = [ln.split()[1] for ln in Path("/proc/mounts").read_text().splitlines()]
    for m in sorted((m for m in mounts if m.startswith(prefix)), key=len, reverse=True):
        subprocess.run(["umount", "-l", m], capture_output=True, check=False)
    mounts = [ln.split()[1] for ln in Path("/proc/mounts").read_text().splitlines()]
    still = [m for m in mounts if m.startswith(prefix)]
    if still:
        raise EmulationError(f"cannot unmount {', '.join(still)}: unmount them by hand, then run again")


def ensure_root(root: Path, mirror: str, log: Log) -> Path:
    """An arm64 Debian bookworm root at `root`, built once (into root.partial, renamed when complete)."""
    done = root / "etc" / "firstwords-root-ok"
    partial = root.with_name(root.name + ".partial")
    for r in (root, partial):
        if r.exists():
            unmount_under(r)
    if not done.exists():
        if root.exists():
            shutil.rmtree(root)
        if partial.exists() and not (partial / "etc" / "debian_version").exists():
            shutil.rmtree(partial)
        if not (partial / "usr" / "bin" / "python3").exists():
            log(f"building the arm64 root {root} with debootstrap (about 6 minutes) ...")
            t = time.monotonic()
            _run(["debootstrap", "--arch=arm64", "--variant=minbase", f"--include={PACKAGES}", "bookworm",
                  str(partial), mirror], "debootstrap", timeout=3600)
            log(f"  debootstrap done in {time.monotonic() - t:.0f} s")
        partial.rename(root)
        done.write_text("built by firstwords tools/check_arm64.py\n")
    else:
        log(f"reusing the arm64 root {root}")
    # The host's network and CA bundle (a proxy's CA may be in it); pip gets its own minimal configuration.
    shutil.copy2("/etc/resolv.conf", root / "etc" / "resolv.conf")
    if Path(CA).exists():
        shutil.copy2(CA, root / CA.lstrip("/"))
    (root / "etc" / "pip.conf").write_text(f"[global]\ncert = {CA}\ndisable-pip-version-check = true\n")
    return root


def in_root(root: Path, cmd: Sequence[str], what: str, cpu: str | None = None, timeout: float = 1800,
            check: bool = True) -> subprocess.CompletedProcess:
    """Run `cmd` inside the root (chroot; /proc and /dev mounted for the call, never /sys)."""
    env = {"PATH": f"{VENV}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
           "HOME": "/root", "LANG": "C.UTF-8", "OPENBLAS_NUM_THREADS": "1", "PIP_DEFAULT_TIMEOUT": "180"}
    if cpu:
        env["QEMU_CPU"] = cpu
    mounted = []
    try:
        for src, dst, opts in (("proc", root / "proc", ["-t", "proc"]), ("/dev", root / "dev", ["--bind"])):
            if not os.path.ismount(dst):
                _run(["mount", *opts, src, str(dst)], f"mount {dst}")
                mounted.append(dst)
        chroot = shutil.which("chroot") or "/usr/sbin/chroot"
        return _run([chroot, str(root), *cmd], what, timeout=timeout, env=env, check=check)
    finally:
        for dst in reversed(mounted):
            subprocess.run(["umount", "-l", str(dst)], capture_output=True, check=False)


def checkout() -> Path:
    here = Path(__file__).resolve().parent.parent
    if not (here / "pyproject.toml").exists():
        raise EmulationError(f"{here} is not a firstwords checkout (no pyproject.toml): run from a clone")
    return here


def install_wheel(root: Path, work: Path, log: Log) -> dict:
    """Build the wheel on the host and install it with the device extras into a venv inside the root."""
    t = time.monotonic()
    dist = work / "dist"
    shutil.rmtree(dist, ignore_errors=True)
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(dist),
          str(checkout())], "building the wheel")
    wheel = next(dist.glob("firstwords-*.whl"))
    opt = root / OPT.lstrip("/")
    opt.mkdir(parents=True, exist_ok=True)
    shutil.copy2(wheel, opt / wheel.name)
    log(f"installing {wheel.name}[{EXTRAS}] into {VENV} inside the root ...")
    if not (root / VENV.lstrip("/") / "bin" / "python").exists():
        in_root(root, ["python3", "-m", "venv", VENV], "creating the venv")
    target = f"{OPT}/{wheel.name}"
    in_root(root, ["pip", "install", "--quiet", f"{target}[{EXTRAS}]"], "pip install", timeout=2400)
    in_root(root, ["pip", "install", "--quiet", "--force-reinstall", "--no-deps", target], "pip reinstall")
    code = ("import importlib.util, platform; import firstwords.edge.encode; "
            "print(platform.machine(), importlib.util.find_spec('torch') is None)")
    check_py = in_root(root, ["python", "-c", code],
                    "importing firstwords", check=False)
    helped = in_root(root, ["firstwords", "--help"], "firstwords --help", check=False)
    words = check_py.stdout.split()
    ok = check_py.returncode == 0 and helped.returncode == 0 and words[:1] == ["aarch64"]
    log(f"  installed in {time.monotonic() - t:.0f} s: {check_py.stdout.strip() or check_py.stderr[-300:]}")
    return {"arm64_install_ok": ok, "torch_absent": ok and words[1:2] == ["True"],
            "install_seconds": round(time.monotonic() - t, 1)}


def ensure_bundles(ckpt: Path, corpus: Path, work: Path, given: str | None, log: Log) -> dict[str, Path]:
    """The U8S8 and S8S8 bundles: `given`/u8s8 and `given`/s8s8, else exported from `ckpt` into work."""
    folder = Path(given) if given else work / "bundles"
    out = {}
    for q in BUNDLES:
        b = folder / q
        if not (b / "manifest.json").exists():
            if given:
                raise EmulationError(f"no bundle at {b}: firstwords export --quantization qdq_{q} makes one")
            log(f"exporting the qdq_{q} bundle from {ckpt} ...")
            _run([sys.executable, "-m", "firstwords.edge.cli", "export", str(ckpt), "-o", str(b), "--config",
                  "rpi4", "--quantization", f"qdq_{q}", "--eval-data", str(corpus / "eval.json")],
                 f"export qdq_{q}")
        out[q] = b.resolve()
    return out


def prepare_inputs(corpus: Path, work: Path, n_images: int, minutes: float, log: Log) -> dict[str, Path]:
    """Fixed inputs decoded on the host (so JPEG decoders cannot differ): eval frames as uint8, their labels,
    the category words and test utterances, and a short sample session (video + transcript) for replay."""
    from firstwords.edge.images import read_image

    inp = work / "inputs"
    inp.mkdir(parents=True, exist_ok=True)
    items = json.loads((corpus / "eval.json").read_text())["data"]
    cats = sorted({it["category"] for it in items})
    per = max(1, n_images // len(cats))
    chosen = [it for c in cats for it in [x for x in items if x["category"] == c][:per]]
    frames = np.stack([read_image(str(corpus / it["frame_filename"])) for it in chosen])
    np.save(inp / "frames.npy", frames)
    texts = cats + [d["utterance"] for d in json.loads((corpus / "test.json").read_text())["data"][:60]]
    labels = [it["category"] for it in chosen]
    (inp / "inputs.json").write_text(json.dumps({"labels": labels, "texts": texts}))
    session = work / "session"
    if not (session / "session.json").exists():
        log(f"making a {minutes:g}-minute sample session for replay ...")
        _run([sys.executable, "-m", "firstwords.export.sample_session", "--corpus", str(corpus), "--out",
              str(session), "--max-minutes", str(minutes), "--no-speech"], "sample session")
    return {"frames": inp / "frames.npy", "inputs": inp / "inputs.json", "session": session,
            "probe_image": corpus / chosen[0]["frame_filename"], "word": cats[0]}


def hwcaps() -> dict[str, bool]:
    """CPU features the (emulated) CPU really offers, from getauxval (never /proc/cpuinfo under qemu)."""
    import ctypes
    import platform

    if platform.machine() != "aarch64":
        return {}
    libc = ctypes.CDLL(None)
    libc.getauxval.restype = ctypes.c_ulong
    hw, hw2 = libc.getauxval(16), libc.getauxval(26)  # AT_HWCAP, AT_HWCAP2
    return {"asimd": bool(hw & (1 << 1)), "dotprod": bool(hw & (1 << 20)), "sve": bool(hw & (1 << 22)),
            "i8mm": bool(hw2 & (1 << 13))}


def probe(bundle: str, frames: str, inputs: str, out: str, threads: int = 2) -> None:
    """Encode the fixed frames and texts with `bundle`; save embeddings and CPU features to `out` (.npz)."""
    from firstwords.edge.bundle import load_bundle
    from firstwords.edge.encode import Encoder

    enc = Encoder(load_bundle(bundle), threads=threads)
    x = np.load(frames)
    texts = json.loads(Path(inputs).read_text())["texts"]
    img = np.concatenate([enc.encode_image(x[i:i + 16]) for i in range(0, len(x), 16)])
    np.savez(out, image=img, text=enc.encode_utterance(texts), hwcaps=json.dumps(hwcaps()))


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def accuracy_4way(npz: dict, labels: list[str], cats: list[str]) -> float:
    from firstwords.edge.evaluate import make_trials, score_trials

    trials = make_trials(labels, n_way=4, trials_per_category=100, seed=0)
    words = {c: npz["text"][i] for i, c in enumerate(cats)}
    return float(score_trials(trials, npz["image"], words).overall)


def compare_all(root: Path, bundles: dict[str, Path], inputs: dict[str, Path], work: Path, cpus: list[str],
                log: Log) -> dict:
    """x86 reference, then per CPU model: both bundles' embeddings compared, replay, ask and doctor."""
    spec = json.loads(inputs["inputs"].read_text())
    labels, cats = spec["labels"], sorted(set(spec["labels"]))
    opt = root / OPT.lstrip("/")
    staged = {}
    for name, src in [("frames.npy", inputs["frames"]), ("inputs.json", inputs["inputs"]),
                      ("probe.jpg", inputs["probe_image"])]:
        shutil.copy2(src, opt / name)
    for name in ("session", *bundles):
        src = inputs["session"] if name == "session" else bundles[name]
        shutil.rmtree(opt / name, ignore_errors=True)
        shutil.copytree(src, opt / name)
        staged[name] = f"{OPT}/{name}"
    ref = {}
    for q, b in bundles.items():
        probe(str(b), str(inputs["frames"]), str(inputs["inputs"]), str(work / f"x86_{q}.npz"))
        ref[q] = dict(np.load(work / f"x86_{q}.npz"))
    out: dict = {"acc_4way_x86": {q: round(accuracy_4way(r, labels, cats), 4) for q, r in ref.items()},
                 "acc_4way_arm": {}, "per_cpu": {}, "n_images": len(labels), "n_texts": len(spec["texts"])}
    img_cos, utt_cos = [], []
    replay_ok = ask_ok = doctor_ok = True
    for cpu in cpus:
        row: dict = {}
        out["acc_4way_arm"][cpu] = {}
        for q in bundles:
            log(f"[{cpu}] encoding {len(labels)} frames and {len(spec['texts'])} texts with the {q} bundle")
            in_root(root, ["python", "-m", "firstwords.edge.emulation", "probe", staged[q],
                           f"{OPT}/frames.npy", f"{OPT}/inputs.json", f"{OPT}/arm_{cpu}_{q}.npz"],
                    f"probe {cpu} {q}", cpu=cpu)
            arm = dict(np.load(opt / f"arm_{cpu}_{q}.npz"))
            ci, cu = _cos(arm["image"], ref[q]["image"]), _cos(arm["text"], ref[q]["text"])
            img_cos.append(ci.min())
            utt_cos.append(cu.min())
            out["acc_4way_arm"][cpu][q] = round(accuracy_4way(arm, labels, cats), 4)
            row[q] = {"image_cos_min": round(float(ci.min()), 6),
                      "image_cos_mean": round(float(ci.mean()), 6),
                      "utterance_cos_min": round(float(cu.min()), 6)}
            row["hwcaps"] = json.loads(str(arm["hwcaps"]))
        row.update(_behaviour(root, cpu, staged, inputs["word"], log))
        replay_ok &= row["replay_ok"]
        ask_ok &= row["ask_ok"]
        doctor_ok &= row["doctor_ok"]
        out["per_cpu"][cpu] = row
    out.update(image_cos_min=round(float(min(img_cos)), 6), utterance_cos_min=round(float(min(utt_cos)), 6),
               replay_ok=replay_ok, ask_ok=ask_ok, doctor_ok=doctor_ok)
    return out


def _behaviour(root: Path, cpu: str, staged: dict[str, str], word: str, log: Log) -> dict:
    """Replay the session's transcript into a fresh memory, ask it, and run doctor for rpi4 and rpi5."""
    mem = f"{OPT}/memory_{cpu}.db"
    for p in root.joinpath(OPT.lstrip("/")).glob(f"memory_{cpu}.db*"):
        p.unlink()
    log(f"[{cpu}] replaying the session transcript, asking, doctor ...")
    rep = in_root(root, ["firstwords", "replay", staged["session"], "--bundle", staged["u8s8"], "--memory",
                         mem, "--config", "rpi4", "--words-from", "transcript", "--json", "-q"], "replay",
                  cpu=cpu, check=False)
    learned = 0
    if rep.returncode == 0 and rep.stdout.strip():
        learned = int(json.loads(rep.stdout.strip().splitlines()[-1]).get("words_in_memory") or 0)
    ask_w = in_root(root, ["firstwords", "ask", "--memory", mem, "--word", word, "--json"], "ask", cpu=cpu,
                    check=False)
    ask_i = in_root(root, ["firstwords", "ask", "--memory", mem, "--image", f"{OPT}/probe.jpg", "--bundle",
                           staged["u8s8"], "--json"], "ask", cpu=cpu, check=False)
    doctors = {}
    for board in ("rpi4", "rpi5"):
        d = in_root(root, ["firstwords", "doctor", "--config", board, "--bundle", staged["u8s8"],
                           "--data-dir", OPT, "--no-latency", "--no-devices"], f"doctor {board}", cpu=cpu,
                    check=False)
        doctors[board] = d.returncode
        if d.returncode != 0:
            log(f"  doctor {board} under {cpu} exited {d.returncode}:\n{d.stdout[-1500:]}{d.stderr[-800:]}")
    for name, p in (("replay", rep), ("ask --word", ask_w), ("ask --image", ask_i)):
        if p.returncode != 0:
            log(f"  {name} under {cpu} exited {p.returncode}: {p.stderr[-800:]}")
    return {"replay_ok": rep.returncode == 0 and learned > 0, "words_learned": learned,
            "ask_ok": ask_w.returncode == 0 and ask_i.returncode == 0,
            "doctor_ok": all(rc == 0 for rc in doctors.values()), "doctor_rc": doctors}


ADAPT_PACKAGES = "sphinxtrain sphinxbase-utils pocketsphinx"  # Debian's, arm64 builds of the same packages
ADAPT_VOICES = ("espeak:en-us+f3", "flite:awb")  # the enrolment's readers (a short script: ~3 min of speech)


def compare_adaptation(root: Path, bundle: Path, work: Path, cpu: str, log: Log) -> dict:
    """Speaker adaptation on arm64 (edge.asr_adapt): two synthesiser voices read the bundle's enrolment
    script on the host; Debian's arm64 trainer packages are installed in the root; `firstwords adapt
    --enrolment` there estimates the adaptation from the same readings, and its means are compared with the
    host's. {"adapt_ok": None} (not measured) when the host lacks the programs or the voices."""
    from firstwords.edge import asr_enrol
    from firstwords.edge.asr_adapt import adapt_home, find_tools
    from firstwords.edge.bundle import load_bundle
    from firstwords.edge.synth import available_voices

    voices = available_voices(list(ADAPT_VOICES))
    try:
        find_tools()
    except FirstwordsError as e:
        log(f"speaker adaptation not compared: {e}")
        return {"adapt_ok": None}
    if not voices:
        log("speaker adaptation not compared: no speech synthesiser voice on the host")
        return {"adapt_ok": None}
    t = time.monotonic()
    folder, host = work / "enrolment", work / "x86.speech.adapt"
    shutil.rmtree(folder, ignore_errors=True)
    b = load_bundle(bundle)
    try:
        asr_enrol.write_prompts(folder, asr_enrol.enrolment_prompts(asr_enrol.bundle_words(b)))
        asr_enrol.synthesize(folder, voices)
        adapt_home([], b, host, enrolment=folder)
    finally:
        b.close()
    opt = root / OPT.lstrip("/")
    shutil.rmtree(opt / "enrolment", ignore_errors=True)
    shutil.copytree(folder, opt / "enrolment")
    shutil.copy2("/etc/resolv.conf", root / "etc" / "resolv.conf")  # apt inside the root resolves names
    log(f"installing {ADAPT_PACKAGES} in the root (apt-get) ...")
    in_root(root, ["sh", "-c", f"dpkg -s {ADAPT_PACKAGES} >/dev/null 2>&1 || (apt-get update -qq && "
                               f"DEBIAN_FRONTEND=noninteractive apt-get install -y -qq {ADAPT_PACKAGES})"],
            "apt-get install the adaptation's programs", timeout=2400)
    log(f"[{cpu}] firstwords adapt --enrolment ({len(voices)} voices) ...")
    mem = f"{OPT}/adapt/memory.db"
    shutil.rmtree(opt / "adapt", ignore_errors=True)
    (opt / "adapt").mkdir()
    in_root(root, ["firstwords", "adapt", "--enrolment", f"{OPT}/enrolment", "--bundle",
                   f"{OPT}/{bundle.name}", "--memory", mem], "adapt", cpu=cpu, timeout=3000)
    x86, arm = (_s3_floats(p) for p in (host, opt / "adapt" / "memory.speech.adapt"))
    diff = float(np.abs(x86 - arm).max()) if x86.shape == arm.shape else float("inf")
    log(f"  adapted means, arm64 vs x86: largest difference {diff:.2g} ({time.monotonic() - t:.0f} s)")
    return {"adapt_ok": diff <= 1e-3, "adapt_means_max_diff": diff,
            "adapt_seconds": round(time.monotonic() - t)}


def _s3_floats(path: Path) -> np.ndarray:
    """The float32 body of a Sphinx s3 parameter file (header, byte-order word and dimensions skipped; the
    trailing checksum too)."""
    b = path.read_bytes()
    body = np.frombuffer(b[b.index(b"endhdr\n") + 11:], dtype=np.uint8)
    return body[:len(body) // 4 * 4].view(np.float32)[8:-1]


def table(out: dict) -> str:
    lines = [f"arm64 install ok: {out.get('arm64_install_ok')}   torch absent: {out.get('torch_absent')}"]
    x86 = out.get("acc_4way_x86", {})
    if x86:
        lines.append(f"{'cpu':<11} {'bundle':<6} {'img cos min':>11} {'img cos mean':>12} "
                     f"{'utt cos min':>11} {'acc arm':>8} {'acc x86':>8}  replay ask doctor  features")
    for cpu, row in out.get("per_cpu", {}).items():
        feats = ",".join(k for k, v in row.get("hwcaps", {}).items() if v)
        for q in BUNDLES:
            r = row.get(q)
            if r:
                arm = out["acc_4way_arm"][cpu][q]
                lines.append(f"{cpu:<11} {q:<6} {r['image_cos_min']:>11.5f} {r['image_cos_mean']:>12.5f} "
                             f"{r['utterance_cos_min']:>11.5f} {arm:>8.3f} {x86[q]:>8.3f}  "
                             f"{row['replay_ok']!s:<6} {row['ask_ok']!s:<4} {row['doctor_ok']!s:<6}  {feats}")
    if "adapt_ok" in out:
        lines.append(f"speaker adaptation (adapt --enrolment): {out['adapt_ok']}"
                     + (f", adapted means within {out['adapt_means_max_diff']:.2g} of x86's"
                        if out.get("adapt_means_max_diff") is not None else " (not measured)"))
    lines.append(f"{out.get('seconds', 0):.0f} s in all (emulated timings say nothing about a board)")
    return "\n".join(lines)


def passed(out: dict) -> bool:
    accs = [abs(a - out["acc_4way_x86"][q]) <= 0.01 for row in out.get("acc_4way_arm", {}).values()
            for q, a in row.items()]
    return bool(out.get("arm64_install_ok") and out.get("torch_absent")
                and out.get("image_cos_min", 0) >= 0.995 and accs and all(accs)
                and out.get("replay_ok") and out.get("ask_ok") and out.get("doctor_ok")
                and out.get("adapt_ok") is not False)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m firstwords.edge.emulation")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("probe", help="encode fixed frames and texts with a bundle into an .npz")
    for name in ("bundle", "frames", "inputs", "out"):
        p.add_argument(name)
    p.add_argument("--threads", type=int, default=2)
    a = ap.parse_args(argv)
    probe(a.bundle, a.frames, a.inputs, a.out, a.threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
