"""firstwords ask: query a memory — which words for this image, which moments for this word."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HELP = "ask a memory: the words it has for an image (--image), or the moments it remembers of a word (--word)"
EXAMPLE = ("firstwords ask --memory work/memory.db --bundle work/bundle "
           "--image work/corpus/eval_frames/000001.jpg -k 5")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--memory", required=True, help="memory file written by run / replay")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--image", help="an image file: print the top-k words with scores (needs --bundle)")
    what.add_argument("--word", help="a word: print the best-matching remembered moments")
    parser.add_argument("--bundle", help="model bundle (needed for --image)")
    parser.add_argument("-k", type=int, default=5, help="how many answers (default: 5)")
    parser.add_argument("--json", action="store_true", help="print the answers as one JSON line")


def run(args: argparse.Namespace) -> int:
    from firstwords.edge.errors import InputError
    from firstwords.edge.memory import AssociativeMemory
    from firstwords.edge.memory_moment import word_as_learned

    if args.k < 1:
        raise InputError(f"-k must be at least 1, got {args.k}")
    if args.image:
        if not args.bundle:
            raise InputError("--image needs --bundle (the encoder that turns the image into an embedding)")
        from firstwords.edge.bundle import load_bundle
        from firstwords.edge.encode import Encoder
        from firstwords.edge.images import read_image

        if not Path(args.image).is_file():
            missing = not Path(args.image).exists()
            raise InputError(f"{args.image}: no such image file; check the path" if missing
                             else f"{args.image}: not a regular file; give an image file (png, jpg, ...)")
        image = read_image(args.image)  # an unreadable or huge image is said before anything loads
        with AssociativeMemory.open_existing(args.memory, read_only=True) as mem:
            enc = Encoder(load_bundle(args.bundle), threads=1)
            if enc.dim != mem.dim:
                raise InputError(f"the bundle's embedding dim ({enc.dim}) differs from the memory's "
                                 f"({mem.dim}); use the bundle the memory was made with")
            answers = mem.name(enc.encode_image([image])[0], k=args.k)
        if args.json:
            print(json.dumps({"image": args.image, "words": [[w, round(s, 4)] for w, s in answers]}))
        elif not answers:
            print("the memory knows no words yet")
        else:
            for w, s in answers:
                print(f"{w:<16} {s:7.3f}")
        return 0
    word = word_as_learned(args.word)
    with AssociativeMemory.open_existing(args.memory, read_only=True) as mem:
        episodes = mem.find(word, k=args.k)
        exposures = mem.exposures(word)
    if args.json:
        print(json.dumps({"word": word, "exposures": exposures,
                          "moments": [{"t": e.t, "text": e.text, "score": round(e.score, 4), "words": e.words}
                                      for e in episodes]}))
    elif not episodes:
        print(f"the memory has no moments for {word!r} (heard {exposures} times)")
    else:
        print(f"{word!r}: heard {exposures} times; best-matching moments:")
        for e in episodes:
            print(f"  t={e.t:8.2f} s  score {e.score:6.3f}  \"{e.text}\"")
    return 0
