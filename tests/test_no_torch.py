"""The device runtime must never import torch (220 MB of RSS the Pi cannot spare)."""

import subprocess
import sys

CODE = """
import importlib, pkgutil, sys
import firstwords.edge as edge
failed = []
for m in pkgutil.walk_packages(edge.__path__, "firstwords.edge."):
    try:
        importlib.import_module(m.name)
    except ImportError as e:          # optional extras (cv2, sounddevice) may be absent on a device
        failed.append((m.name, str(e)))
import firstwords.edge.cli
edge.cli.build_parser()               # every command's help, export's included, without torch
print("TORCH" if "torch" in sys.modules else "CLEAN")
print(failed)
"""


def test_importing_every_edge_module_and_the_cli_does_not_import_torch():
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[0] == "CLEAN", out.stdout
