"""Our plain-Python tokenizer against spaCy's own (dev only): CVCL tokenised with spaCy's English tokenizer, so
for a CVCL vocabulary every utterance must give exactly spaCy's tokens (lowercased, as CVCL does)."""

from __future__ import annotations

import json
import random

import pytest
from firstwords.edge.tokenize import RULES_FILE, spacy_rules_from_tokenizer, tokens, words

spacy = pytest.importorskip("spacy", reason="spaCy is a dev-only dependency: pip install 'firstwords[dev]'")

NAMES = ["Mommy", "mommy", "Daddy", "Sam", "Grandma", "the dog", "the kitty", "James", "Chris", "baby"]
THINGS = ["ball", "car", "sand", "kitty", "cat", "shoe", "puzzle", "book", "apple", "crib", "stairs", "window",
          "teddy bear", "choo-choo train", "t-shirt", "ice cream", "high chair", "toothbrush", "fish", "bubbles"]
OPENERS = ["", "Oh, ", "Look, ", "Hey ", "Ok. ", "Okay! ", "Uh-oh, ", "Wow... ", "Hmm? ", "So ", "Yeah, ",
           "Mm-hmm. ", "Uh-huh, ", "Sweetie, ", "No no no, ", "Hi there! ", "Alright - ", "Well; ", "(laughs) "]
TEMPLATES = [
    "that's a {t}", "it's a {t}", "don't eat the {t}", "what's that?", "you're a good boy", "where's the {t}?",
    "can't find the {t}", "won't you share the {t}", "let's get the {t}!", "here's {n}'s {t}", "there's the {t}.",
    "who's that?", "isn't that {n}'s {t}?", "we're gonna play with the {t}", "I'm gonna get you!",
    "do you wanna see the {t}?", "I've got the {t}", "you'll like the {t}", "they'll come back", "she's sleeping",
    "he's got a {t}", "we'll see", "I'd love a {t}", "y'all done?", "didn't you want the {t}", "doesn't it fly?",
    "wouldn't that be fun", "shouldn't touch the {t}", "couldn't reach the {t}", "aren't you silly",
    "it's {n}'s", "that is the {t}", "look at the {t}", "the {t} is red.", "peek-a-boo!", "uh oh, the {t} fell",
    "one, two, three!", "it's 3 o'clock", "It's 10:30 now", "you're 1 and a half", "2 {t}s", "about 3.5 inches",
    "the 1st {t}", "$5 for the {t}", "100% done", "page 3-4", "ma'am, the {t}", "Mr. Rogers' {t}", "Dr. Seuss",
    "e.g. the {t}", "the kids' {t}", "James' {t}", "THAT'S A {T}!!", "That’s a {t}", "don’t touch", "it’s mine",
    "\"{t}\" she said", "say 'please'", "(the {t})", "[inaudible] the {t}", "the {t}--no, the other one",
    "wait... the {t}?!", "the {t}!?", "no-no-no", "all-done", "the {t}/the other {t}", "rock & roll",
    "what're you doing", "where're we going", "how's the {t}", "when's lunch", "why's it wet", "gotta go",
    "lemme see", "gimme the {t}", "c'mon", "'cause it's hot", "'til later", "nothin' there", "o.k.",
    "ok.", "etc.", "U.S.A.", "a.m. or p.m.", "5pm", "10am", "3rd floor", "it's 7 o’clock", "20-30 min",
    ":) good job", "good job :-)", "yay <3", "hi!!!", "no...", "nooo!", "whee~", "#1 fan", "mom@home.com",
    "see www.example.com", "x = 2", "the {t}'s wheel", "the {t}s' wheels", "Cannot do it", "I'll've", "'s ok",
]
EDGE_CASES = [
    "", " ", "   ", "\t", "a  b", "a\tb", "a\nb", " leading", "trailing ", "double  space", "...", "!!!", "'",
    "''", "'s", "n't", "don't", "Don't", "DON'T", "dont", "don't.", "(don't)", "\"don't\"", "don't!", "can't?",
    "we're.", "'em", "o'clock", "rock'n'roll", "ain't", "y'know", "s'more", "'tis", "‘quoted’", "“so”",
    "he said:\"go\"", "a-b-c", "-", "--", "—", "x-ray", "3-year-old", "5,000", "1,2,3", "1.", "1.5.", "Jan.",
    "i.e.", "vs.", "St. Louis", "a.", "A.", "ok?!", ":(", "(:)", "(-:", ":-P", "<3", "XD", "^_^", "o_O",
    "ball.ball", "ball,ball", "ball!ball", "ball?ball", "ball/ball", "ball:ball", "ball;ball", "ball(ball)",
    "#hashtag", "@mention", "50%", "£3", "€4", "2x", "x2", "10km", "C++", "a&b", "½", "°C", "café", "naïve",
    "Señor", "doggy-doo's", "teddy's-bear", "it's-a", "'hello'", "goin'", "ev'ry", "NO!", "No.", "I.", "Ok...ok",
]


def utterances(n: int, seed: int = 0) -> list[str]:
    """Child-directed utterances: templates x names x things x openers, with case, spacing and punctuation
    varied, plus random glued token soup, plus the edge cases above."""
    rng = random.Random(seed)
    out = list(EDGE_CASES)
    glue = [" ", " ", " ", "", "  ", "\t"]
    enders = ["", "", ".", "!", "?", "...", "!!", "?!", " .", "\n"]
    while len(out) < n // 2:
        t = rng.choice(THINGS)
        s = rng.choice(OPENERS) + rng.choice(TEMPLATES).format(t=t, T=t.upper(), n=rng.choice(NAMES))
        s += rng.choice(enders)
        case = rng.random()
        s = s.upper() if case < 0.05 else s.capitalize() if case < 0.3 else s
        out.append(s)
    pieces = (["'s", "n't", "'re", "'ll", "'", "\"", ".", ",", "!", "?", "-", "--", "...", ":", ";", "(", ")",
               "[", "]", "’", "s", "do", "ca", "wo", "that", "it", "3", "10", "a.m.", "$", "%", "/", ":)"]
              + [w for t in TEMPLATES[:40] for w in t.split()])
    while len(out) < n:
        k = rng.randint(1, 9)
        out.append("".join(rng.choice(pieces) + rng.choice(glue) for _ in range(k)).strip(" "))
    return out


def cvcl_tokens(nlp, text: str) -> list[str]:
    """CVCL's preprocessing: spaCy tokens, each lowercased, joined with spaces, later split on whitespace."""
    return " ".join(t.text.lower() for t in nlp(text)).split()


@pytest.fixture(scope="module")
def nlp():
    return spacy.blank("en")


def test_stored_rules_are_spacys(nlp):
    from spacy.attrs import ORTH

    stored = json.loads(RULES_FILE.read_text(encoding="utf-8"))
    live = spacy_rules_from_tokenizer(nlp.tokenizer, spacy.__version__, ORTH)
    stale = [k for k in ("prefix", "suffix", "infix", "url", "specials") if stored[k] != live[k]]
    assert not stale, (f"edge/rules/spacy_en.json differs from spaCy {spacy.__version__} in {stale}: run "
                       "python tools/dump_spacy_rules.py edge/rules/spacy_en.json")


def test_identical_to_spacy_on_child_directed_utterances(nlp):
    texts = utterances(3000)
    assert len(set(texts)) >= 2000
    mismatches = [(t, tokens(t), cvcl_tokens(nlp, t)) for t in texts if tokens(t) != cvcl_tokens(nlp, t)]
    assert not mismatches, f"{len(mismatches)} of {len(texts)} differ, e.g. {mismatches[:5]}"


def test_the_utterances_the_issue_names():
    assert tokens("that's a ball") == ["that", "'s", "a", "ball"]
    assert tokens("Don't eat the sand!") == ["do", "n't", "eat", "the", "sand", "!"]
    assert tokens("What's that?") == ["what", "'s", "that", "?"]
    assert tokens("You're a good boy.") == ["you", "'re", "a", "good", "boy", "."]
    assert tokens("Mommy's peek-a-boo, 3.5 times...") == ["mommy", "'s", "peek", "-", "a", "-", "boo", ",", "3.5",
                                                        "times", "..."]
    assert words("That's it, isn't it?!") == ["that", "'s", "it", "is", "n't", "it"]
