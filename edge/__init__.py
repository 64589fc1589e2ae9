"""firstwords device runtime: numpy + onnxruntime only (never torch)."""

# Before anything can import onnxruntime: its telemetry is off only if this is set before the import (edge/ort.py).
from firstwords.edge.ort import disable_telemetry_env

disable_telemetry_env()
