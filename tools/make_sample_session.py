"""Command-line wrapper: `python tools/make_sample_session.py --help` (the builder is firstwords.export.sample_session)."""

from firstwords.export.sample_session import main

if __name__ == "__main__":
    raise SystemExit(main())
