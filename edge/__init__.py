"""firstwords device runtime: numpy + onnxruntime only (never torch).

Importing this package, before anything else of ours runs:
- sets OPENBLAS_NUM_THREADS=1 unless the user set it: numpy's BLAS threads would fight onnxruntime's for the
  same cores (measured: a 10k-word memory query 0.17 ms -> 32 ms). OpenBLAS reads the variable once, when numpy
  loads, so every entry point imports `firstwords.edge` before numpy: the CLI and `python -m firstwords.export...`
  do so through their packages; a script in tools/ starts with a plain `import firstwords.edge` line (import
  sorting keeps it above `import numpy`);
- turns onnxruntime's telemetry off: it is off only if ORT_DISABLE_TELEMETRY is set before onnxruntime is
  imported (edge/ort.py).
"""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from firstwords.edge.ort import disable_telemetry_env  # noqa: E402  (after the BLAS setting, on purpose)

disable_telemetry_env()
