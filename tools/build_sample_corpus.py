"""Command-line wrapper: `python tools/build_sample_corpus.py --help`.

The builder is the package module firstwords.export.sample_corpus."""

from firstwords.export.sample_corpus import main

if __name__ == "__main__":
    raise SystemExit(main())
