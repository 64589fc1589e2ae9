"""The speech recogniser's language model, built once at export time and shipped in the bundle.

Open vocabulary with the bundle's words favoured, never forced: pocketsphinx's general English trigram model
(72k words, in its wheel) linearly interpolated with a trigram model of the bundle's training sentences,

    p(w | h) = weight * p_domain(w | h) + (1 - weight) * p_general(w | h)        (weight 0.2 by default)

on the union of both models' n-grams, with back-off weights recomputed so that every context sums to one (the
static mixture SRILM's `ngram -mix-lm` writes). Any English word can still be heard; "shoe" after "look at
the" is much more likely than the general model alone would say. Measured on six voices
(tools/bench_hearing.py): the general model alone hears a quarter of the object words, a model of the domain
alone puts object words on speech that names none; the mixture does neither.

A board with little RAM gets the general model pruned before the mix: its most probable words
(`max_general_words`) and the bigrams and trigrams of largest joint probability (`max_general_ngrams`).
"""

from __future__ import annotations

import json
import logging
import math
import re
from pathlib import Path

import numpy as np
from firstwords.edge.errors import DataError
from firstwords.export.lm_arpa import (
    NEG,
    Arpa,
    arpa_to_bin,
    keys_of,
    load_general,
    lookup,
    pocketsphinx_version,
    read_arpa,
    write_arpa,
    write_dictionary,
)

log = logging.getLogger(__name__)

DOMAIN_WEIGHT = 0.2  # measured 0.15, 0.2, 0.3, 0.5: 0.2 keeps recall at the lowest off-topic word error
LM_FILE = "speech_lm.bin"  # the bundle's file (pocketsphinx trie binary)
DICT_FILE = "speech.dict"  # pronunciations (CMUdict format) of the LM's words
_WORD = re.compile(r"[a-z][a-z']*")


def normalise(model: Arpa) -> Arpa:
    """The model made a distribution: unigrams scaled to sum to one, back-off weights recomputed.
    pocketsphinx's ARPA builder keeps its discount mass (half) off the unigrams, so its models sum to 0.5."""
    p = 10.0 ** model.logp[0]
    logp = [np.where(p > 0, np.log10(np.maximum(p, 1e-99) / p.sum()), NEG), *model.logp[1:]]
    return _renormalise(model.words, model.grams, logp)


def domain_arpa(sentences: list[str], path: str | Path) -> Path:
    """A trigram model of the training sentences (pocketsphinx's own ARPA builder, absolute discounting; not
    normalised: see normalise())."""
    from pocketsphinx.lm import ArpaBoLM

    lines = [" ".join(ws) for ws in (sentence_words(s) for s in sentences) if ws]
    if not lines:
        raise DataError("no words in the training sentences to build the speech language model from")
    model = ArpaBoLM(text="\n".join(lines) + "\n", add_start=True)
    model.compute()
    with open(path, "w", encoding="utf-8") as f:
        model.write(f)
    return Path(path)


def sentence_words(text: str) -> list[str]:
    """Words as the pronouncing dictionary spells them ("where's" stays one word)."""
    return _WORD.findall(text.lower().replace("\u2019", "'"))


def _logprob(model: Arpa, keys_by_order: list[np.ndarray], grams: np.ndarray) -> np.ndarray:
    """log10 p(w | h) with back-off for every row of grams ([N, n] ids in the model's own numbering, -1 for a
    word the model lacks)."""
    n = grams.shape[1]
    out = np.full(len(grams), NEG)
    ok = (grams >= 0).all(axis=1) if n == 1 else grams[:, -1] >= 0
    if n == 1:
        out[ok] = model.logp[0][grams[ok, 0]]
        return out
    found, idx = lookup(keys_by_order[n - 1], keys_of(np.where(grams < 0, 0, grams)))
    found &= (grams >= 0).all(axis=1)
    out[found] = model.logp[n - 1][idx[found]]
    rest = ~found & ok
    if rest.any():
        ctx = grams[rest, :-1]
        cfound, cidx = lookup(keys_by_order[n - 2], keys_of(np.where(ctx < 0, 0, ctx)))
        cfound &= (ctx >= 0).all(axis=1)
        bow = np.where(cfound, model.bow[n - 2][cidx], 0.0)
        out[rest] = bow + _logprob(model, keys_by_order, grams[rest, 1:])
    return out


def _renormalise(words: list[str], grams: list[np.ndarray], logp: list[np.ndarray]) -> Arpa:
    """Back-off weights that make every context sum to one, lowest order first."""
    model = Arpa(words, grams, logp, [np.zeros(len(g)) for g in grams])
    keys = [model.keys(n) for n in range(1, model.order + 1)]
    for n in range(1, model.order):
        child = grams[n]  # (n+1)-grams
        ctx_found, ctx_idx = lookup(keys[n - 1], keys_of(child[:, :-1]))
        if not ctx_found.all():
            raise DataError("language model: an n-gram's context is missing from the lower order")
        hi = np.bincount(ctx_idx, weights=10.0 ** logp[n], minlength=len(grams[n - 1]))
        lo = np.bincount(ctx_idx, weights=10.0 ** _logprob(model, keys, child[:, 1:]),
                         minlength=len(grams[n - 1]))
        num, den = np.clip(1.0 - hi, 1e-7, None), np.clip(1.0 - lo, 1e-7, None)
        model.bow[n - 1] = np.where(np.bincount(ctx_idx, minlength=len(grams[n - 1])) > 0,
                                    np.log10(num / den), 0.0)
    return model


def _closed(grams: np.ndarray, lower_keys: np.ndarray, lower_grams: np.ndarray) -> np.ndarray:
    """n-grams whose context (first n-1 words) exists as an (n-1)-gram (ARPA needs it)."""
    found, _ = lookup(lower_keys, keys_of(grams[:, :-1]))
    return grams[found]


def prune(model: Arpa, max_ngrams: int) -> list[np.ndarray]:
    """The n-grams (orders >= 2) kept when at most `max_ngrams` of them may stay: those of largest joint
    probability p(w1) p(w2 | w1) ... (the probability the model gives the whole n-gram)."""
    grams = list(model.grams)
    if sum(len(g) for g in grams[1:]) <= max_ngrams:
        return grams
    joint = [model.logp[0]]
    for n in range(1, model.order):
        found, idx = lookup(model.keys(n), keys_of(grams[n][:, :-1]))
        joint.append(np.where(found, joint[-1][idx], NEG) + model.logp[n])
    score = np.concatenate(joint[1:])
    cut = np.partition(score, len(score) - max_ngrams)[len(score) - max_ngrams]
    for n in range(1, model.order):
        grams[n] = grams[n][joint[n] >= cut]
    for n in range(2, model.order):  # an n-gram whose context went goes too
        grams[n] = _closed(grams[n], keys_of(grams[n - 1]), grams[n - 1])
    return grams


def restrict_words(model: Arpa, max_words: int, keep: set[str] = frozenset()) -> Arpa:
    """The model over its `max_words` most probable words (and `keep`, and <s> </s>): n-grams with another
    word dropped, unigram probabilities renormalised (interpolate() recomputes the back-off weights)."""
    if len(model.words) <= max_words:
        return model
    top = np.argsort(-model.logp[0], kind="stable")[:max_words]
    wanted = set(top.tolist()) | {i for i, w in enumerate(model.words) if w in keep or w in ("<s>", "</s>")}
    old = np.array(sorted(wanted), np.int64)
    new_id = np.full(len(model.words), -1, np.int64)
    new_id[old] = np.arange(len(old))
    out = Arpa([model.words[i] for i in old], [], [], [])
    for n in range(model.order):
        g = new_id[model.grams[n]]
        ok = (g >= 0).all(axis=1)
        order_idx = np.argsort(keys_of(g[ok]), kind="stable")
        out.grams.append(g[ok][order_idx])
        out.logp.append(model.logp[n][ok][order_idx])
        out.bow.append(model.bow[n][ok][order_idx])
    p = 10.0 ** out.logp[0]
    out.logp[0] = np.where(p > 0, np.log10(np.maximum(p, 1e-99) / p.sum()), NEG)
    return out


def interpolate(general: Arpa, domain: Arpa, weight: float = DOMAIN_WEIGHT,
                max_general_ngrams: int | None = None) -> Arpa:
    """The static linear mixture of two back-off models on the union of their n-grams (see the module doc)."""
    if not 0.0 < weight < 1.0:
        raise ValueError(f"the domain weight must be within (0, 1), got {weight}")
    words = list(general.words) + [w for w in domain.words if w not in set(general.words)]
    union_id = {w: i for i, w in enumerate(words)}
    d_of_union = np.full(len(words), -1, np.int64)
    d_of_union[[union_id[w] for w in domain.words]] = np.arange(len(domain.words))
    g_of_union = np.full(len(words), -1, np.int64)
    g_of_union[:len(general.words)] = np.arange(len(general.words))
    to_union = np.array([union_id[w] for w in domain.words], np.int64)
    kept = prune(general, max_general_ngrams) if max_general_ngrams else general.grams
    g_keys = [general.keys(n) for n in range(1, general.order + 1)]
    d_keys = [domain.keys(n) for n in range(1, domain.order + 1)]
    grams, logp = [], []
    for n in range(1, max(general.order, domain.order) + 1):
        parts = []
        if n == 1:
            parts.append(np.arange(len(words), dtype=np.int64)[:, None])
        else:
            if n <= general.order:
                parts.append(kept[n - 1])
            if n <= domain.order:
                parts.append(to_union[domain.grams[n - 1]])
        u = np.unique(np.concatenate(parts), axis=0)
        if n > 1:
            u = _closed(u, keys_of(grams[-1]), grams[-1])
        u = u[np.argsort(keys_of(u), kind="stable")]
        pg = _logprob(general, g_keys, g_of_union[u]) if n <= general.order else None
        pd = _logprob(domain, d_keys, d_of_union[u])
        if pg is None:
            pg = _logprob(general, g_keys, g_of_union[u[:, -general.order:]])
        mix = weight * 10.0 ** pd + (1.0 - weight) * 10.0 ** pg
        grams.append(u)
        logp.append(np.where(mix > 0, np.log10(np.maximum(mix, 1e-99)), NEG))
    return _renormalise(words, grams, logp)


def build_domain_lm(train_json: str | Path | list[str], out_dir: str | Path, weight: float = DOMAIN_WEIGHT,
                    max_general_ngrams: int | None = None, max_general_words: int | None = None,
                    cache_dir: str | Path | None = None) -> dict:
    """Build the bundle's speech language model from the training sentences (a CVCL train.json or a list of
    utterances) into out_dir/speech_lm.bin, and the pronunciations of its words into out_dir/speech.dict (a
    decoder holding only the words its model can say needs ~15 MB less). Returns the manifest's `speech`
    entry (files and figures)."""
    import tempfile

    if isinstance(train_json, (str, Path)):
        try:
            data = json.loads(Path(train_json).read_text(encoding="utf-8"))["data"]
            sentences = [str(r["utterance"]) for r in data]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise DataError(f"{train_json}: cannot read the training sentences ({e}); "
                            "give a CVCL train.json") from e
    else:
        sentences = [str(s) for s in train_json]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    general = load_general(cache_dir)
    if max_general_words:
        general = restrict_words(general, max_general_words)
    with tempfile.TemporaryDirectory(prefix="firstwords-lm-") as tmp:
        domain = normalise(read_arpa(domain_arpa(sentences, Path(tmp) / "domain.arpa")))
        mixed = interpolate(general, domain, weight, max_general_ngrams)
        arpa_to_bin(write_arpa(mixed, Path(tmp) / "mixed.arpa"), out / LM_FILE)
    missing = write_dictionary(mixed.words, out / DICT_FILE)
    info = {"lm": LM_FILE, "dict": DICT_FILE, "kind": "interpolated", "domain_weight": weight,
            "words_without_pronunciation": missing[:50], "max_general_words": int(max_general_words or 0),
            "general": f"pocketsphinx {pocketsphinx_version()} en-us.lm.bin",
            "ngrams": [len(g) for g in mixed.grams], "domain_sentences": len(sentences),
            "max_general_ngrams": int(max_general_ngrams or 0)}
    log.info("speech LM: %s n-grams (domain weight %.2f) -> %s", info["ngrams"], weight, out / LM_FILE)
    return info


def perplexity(model: Arpa, sentences: list[str]) -> float:
    """Per-word perplexity of sentences (with </s>) under a model: a check that the mixture favours them."""
    ids = {w: i for i, w in enumerate(model.words)}
    keys = [model.keys(n) for n in range(1, model.order + 1)]
    total, count = 0.0, 0
    for s in sentences:
        seq = ["<s>"] + sentence_words(s) + ["</s>"]
        seq_ids = [ids.get(w, -1) for w in seq]
        for i in range(1, len(seq_ids)):
            h = seq_ids[max(0, i - model.order + 1):i + 1]
            total += float(_logprob(model, keys, np.array([h], np.int64))[0])
            count += 1
    return math.pow(10.0, -total / max(count, 1))


def add_speech_lm(bundle: str | Path, train_json: str | Path | list[str], out: str | Path | None = None,
                  max_general_ngrams: int | None = None, max_general_words: int | None = None,
                  weight: float = DOMAIN_WEIGHT) -> Path:
    """Rewrite an existing bundle (folder or .zip) with a speech LM built from train_json (or a list of
    sentences), its towers and vocabulary unchanged (to `out`, or in place). Returns the bundle's path."""
    import tempfile

    from firstwords.edge.bundle import load_bundle
    from firstwords.export.bundle import write_bundle

    b = load_bundle(bundle)
    try:
        fields = {k: v for k, v in b.manifest.items() if k not in ("format", "format_version", "files")}
        with tempfile.TemporaryDirectory(prefix="firstwords-speech-lm-") as tmp:
            fields["speech"] = build_domain_lm(train_json, tmp, weight, max_general_ngrams=max_general_ngrams,
                                               max_general_words=max_general_words)
            extra = {name: Path(tmp) / name for name in (LM_FILE, DICT_FILE)}
            return write_bundle(out or bundle, b.image.path, b.utterance.path, b.vocab, fields,
                                extra_files=extra)
    finally:
        b.close()
