"""firstwords device runtime: numpy + onnxruntime only (never torch).

Importing this package sets OPENBLAS_NUM_THREADS=1 unless the user set it: numpy's BLAS threads would fight
onnxruntime's for the same cores (measured: a 10k-word memory query 0.17 ms -> 32 ms). OpenBLAS reads the
variable once, when numpy loads, so every entry point imports `firstwords.edge` before numpy: the CLI and
`python -m firstwords.export...` do so through their packages; a script in tools/ starts with a plain
`import firstwords.edge` line (import sorting keeps it above `import numpy`).
"""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
