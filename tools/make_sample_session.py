"""Command-line wrapper: `python tools/make_sample_session.py --help`.

The builder is the package module firstwords.export.sample_session."""

from firstwords.export.sample_session import main

if __name__ == "__main__":
    raise SystemExit(main())
