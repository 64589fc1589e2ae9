"""A sample session and a bundle, made with the project's own builders, for tests and tools/soak.py: the
sample corpus --tiny (1 minute), the sample session (video, espeak-ng soundtrack when installed, SRT), and the
tiny exported dual encoder of tiny_dual.py (32 px, dim 16). Needs torch (the train extra) for the bundle.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Sample:
    corpus: Path
    session: Path  # session.json, session.avi, session.srt, session.wav (if espeak-ng is installed)
    bundle: Path

    @property
    def has_audio(self) -> bool:
        return (self.session / "session.wav").is_file()


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                          check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n"
                           f"{proc.stderr[-2000:]}")


def build_sample(root: Path, minutes: float = 1.0, speech: bool = True) -> Sample:
    """Build corpus, session and bundle under `root` (skips what exists)."""
    root.mkdir(parents=True, exist_ok=True)
    corpus, session, bundle = root / "corpus", root / "session", root / "bundle"
    if not (corpus / "timeline.json").is_file():
        _run([sys.executable, "-m", "firstwords.export.sample_corpus", "--tiny", "--minutes", str(minutes),
              "--out", str(corpus), "--no-progress"])
    if not (session / "session.json").is_file():
        _run([sys.executable, "-m", "firstwords.export.sample_session", "--corpus", str(corpus),
              "--out", str(session)] + ([] if speech else ["--no-speech"]))
    if not (bundle / "manifest.json").is_file():
        import torch
        from firstwords.export.tiny_dual import make_bundle

        torch.set_num_threads(1)
        make_bundle(bundle)
    return Sample(corpus, session, bundle)
