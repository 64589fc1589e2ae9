"""Write spaCy's English tokenizer rules as data for firstwords.edge.tokenize (dev only; needs spaCy).

CVCL (Vong et al. 2024) tokenised its utterances with spaCy's English tokenizer. The device must produce the
same tokens without spaCy, so its rules (prefix / suffix / infix / URL patterns and the special cases such as
"don't" -> "do" "n't") are stored as JSON beside edge/tokenize.py, which re-implements the algorithm that
applies them. Re-run this after a spaCy upgrade; tests/test_tokenize_spacy.py says when the stored rules are
stale.

    python tools/dump_spacy_rules.py edge/rules/spacy_en.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("output", help="JSON file to write (the package's copy: edge/rules/spacy_en.json)")
    args = ap.parse_args(argv)
    try:
        import spacy
    except ImportError:
        print("error: this tool needs spaCy: pip install 'firstwords[dev]'", file=sys.stderr)
        return 2
    from firstwords.edge.tokenize import spacy_rules_from_tokenizer
    from spacy.attrs import ORTH

    rules = spacy_rules_from_tokenizer(spacy.blank("en").tokenizer, spacy.__version__, ORTH)
    Path(args.output).write_text(json.dumps(rules, ensure_ascii=False, indent=0, sort_keys=True) + "\n",
                                 encoding="utf-8")
    print(f"wrote {args.output}: {len(rules['specials'])} special cases from spaCy {spacy.__version__}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
