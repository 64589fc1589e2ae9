"""firstwords train — train a dual encoder (CVCL's contrastive recipe) from CVCL-format metadata."""

from __future__ import annotations

import argparse

HELP = "train a CVCL-style dual encoder on frames + utterances (resumable; torchrun for several processes)"
EXAMPLE = "firstwords train --config compact --data work/corpus/train.json -o work/ckpt --max-minutes 10"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from firstwords.export.train_args import add_train_arguments  # argparse only: no torch at import time

    add_train_arguments(parser)
    parser.add_argument("--nproc", type=int, default=1,
                        help="processes (DistributedDataParallel, gloo on CPU) launched through torchrun")


def run(args: argparse.Namespace) -> int:
    import json
    import os
    import subprocess
    import sys

    from firstwords.export import require_torch

    require_torch()
    from firstwords.export.train import describe, options_from_args, result_dict, train
    from firstwords.export.train_args import train_argv

    if args.nproc > 1 and "WORLD_SIZE" not in os.environ:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={args.nproc}", "-m", "firstwords.export.train", *train_argv(args)]
        print("launching:", " ".join(cmd), flush=True)
        return subprocess.call(cmd)
    result = train(options_from_args(args))
    print(describe(result))
    print(json.dumps(result_dict(result)))
    return 0
