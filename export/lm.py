"""The speech recogniser's language model, built once at export time and shipped in the bundle.

Open vocabulary with the bundle's words favoured, never forced: pocketsphinx's general English trigram model
(72k words, in its wheel) linearly interpolated with a trigram model of the bundle's training sentences,

    p(w | h) = weight * p_domain(w | h) + (1 - weight) * p_general(w | h)        (weight 0.3 by default)

on the union of both models' n-grams, with back-off weights recomputed so that every context sums to one (the
static mixture SRILM's `ngram -mix-lm` writes). Any English word can still be heard; "shoe" after "look at the"
is much more likely than the general model alone would say. Measured on six voices (tools/bench_hearing.py):
the general model alone hears a quarter of the object words, a model of the domain alone puts object words on
speech that names none; the mixture does neither.

A board with little RAM gets the general model pruned before the mix (`max_general_ngrams`: the bigrams and
trigrams with the largest joint probability are kept).

The general model ships only as pocketsphinx's binary trie, whose ARPA writer (pocketsphinx 5.1.1) crashes on it:
the header counts six placeholder bigrams the trie keeps for pruned contexts, the writer walks only the real
ones and then sorts six empty rows. `general_arpa` loads the model, sets the in-memory bigram count to what the
writer will find (checked against the header's figures first) and writes the ARPA once into a cache folder.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import logging
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from firstwords.edge.errors import DataError, MissingExtraError

log = logging.getLogger(__name__)

DOMAIN_WEIGHT = 0.3
LM_FILE = "speech_lm.bin"  # the bundle's file (pocketsphinx trie binary)
NEG = -99.0  # log10 of "impossible" as ARPA files write it
_ID_BITS = 21  # word ids in an n-gram key: 2M words at most
# pocketsphinx 5.1.1's en-us.lm.bin: (unigrams, bigrams in the header, trigrams) and the bigrams it really holds
_KNOWN_TRIE_FIX = {(72547, 2051547, 1669625): 2051541}
_WORD = re.compile(r"[a-z][a-z']*")


@dataclass
class Arpa:
    """A back-off n-gram model as arrays: words[i] is the word of id i; for order n (1-based) grams[n-1] is
    int64 [N, n] ids, logp[n-1] log10 p(w | h), bow[n-1] log10 back-off weight (zeros for the top order)."""

    words: list[str]
    grams: list[np.ndarray]
    logp: list[np.ndarray]
    bow: list[np.ndarray]

    @property
    def order(self) -> int:
        return len(self.grams)

    def keys(self, n: int) -> np.ndarray:
        return _keys(self.grams[n - 1])


def _keys(grams: np.ndarray) -> np.ndarray:
    k = np.zeros(len(grams), np.int64)
    for j in range(grams.shape[1]):
        k = (k << _ID_BITS) | grams[:, j].astype(np.int64)
    return k


def _lookup(sorted_keys: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(found mask, index) of keys in a sorted key array."""
    if len(sorted_keys) == 0:
        return np.zeros(len(keys), bool), np.zeros(len(keys), np.int64)
    idx = np.minimum(np.searchsorted(sorted_keys, keys), len(sorted_keys) - 1)
    return sorted_keys[idx] == keys, idx


# ------------------------------------------------------------------------------------------- reading, writing

def read_arpa(path: str | Path) -> Arpa:
    """An ARPA file into arrays (sorted by key within each order)."""
    counts: dict[int, int] = {}
    sections: dict[int, list[list[str]]] = {}
    order = 0
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            m = re.match(r"^ngram (\d+)=(\d+)$", line)
            if m:
                counts[int(m.group(1))] = int(m.group(2))
                continue
            m = re.match(r"^\\(\d+)-grams:$", line)
            if m:
                order = int(m.group(1))
                sections[order] = []
                continue
            if line.startswith("\\") or order == 0:
                continue
            sections[order].append(line.split())
    if not sections or sorted(sections) != list(range(1, len(sections) + 1)):
        raise DataError(f"{path}: not an ARPA language model (no \\1-grams: section, or orders missing)")
    words = [row[1] for row in sections[1]]
    ids = {w: i for i, w in enumerate(words)}
    model = Arpa(words, [], [], [])
    top = len(sections)
    for n in range(1, top + 1):
        rows = sections.pop(n)
        if counts.get(n, len(rows)) != len(rows):
            log.warning("%s: header says %d %d-grams, the file holds %d", path, counts[n], n, len(rows))
        grams = np.array([[ids[w] for w in r[1:n + 1]] for r in rows], np.int64).reshape(-1, n)
        logp = np.array([float(r[0]) for r in rows], np.float64)
        bow = np.array([float(r[n + 1]) if len(r) > n + 1 else 0.0 for r in rows], np.float64)
        order_idx = np.argsort(_keys(grams), kind="stable")
        model.grams.append(grams[order_idx])
        model.logp.append(logp[order_idx])
        model.bow.append(bow[order_idx])
    return model


def write_arpa(model: Arpa, path: str | Path) -> Path:
    path = Path(path)
    words = np.array(model.words, dtype=object)
    with open(path, "w", encoding="utf-8") as f:
        f.write("\\data\\\n")
        f.writelines(f"ngram {n}={len(g)}\n" for n, g in enumerate(model.grams, 1))
        for n, g in enumerate(model.grams, 1):
            f.write(f"\n\\{n}-grams:\n")
            text = words[g[:, 0]]
            for j in range(1, n):
                text = text + " " + words[g[:, j]]
            lp = np.maximum(model.logp[n - 1], NEG)
            if n < model.order:
                lines = [f"{p:.5f} {t} {b:.5f}\n" for p, t, b in zip(lp, text, model.bow[n - 1])]
            else:
                lines = [f"{p:.5f} {t}\n" for p, t in zip(lp, text)]
            f.writelines(lines)
        f.write("\n\\end\\\n")
    return path


def _pocketsphinx():
    try:
        import pocketsphinx
    except ImportError as e:
        raise MissingExtraError("building the speech language model needs pocketsphinx: "
                                "pip install 'firstwords[speech]'") from e
    return pocketsphinx


def arpa_to_bin(arpa_path: str | Path, bin_path: str | Path) -> Path:
    """ARPA -> pocketsphinx's trie binary (loads in a fraction of the time, less RAM)."""
    ps = _pocketsphinx()
    ps.set_loglevel("FATAL")
    try:
        m = ps.NGramModel.readfile(str(arpa_path))
        m.write(str(bin_path), ps.NGramModel.str_to_type("bin"))
    except Exception as e:  # pocketsphinx raises ValueError / RuntimeError on bad models
        raise DataError(f"pocketsphinx could not convert {arpa_path} to its binary format: {e}") from e
    return Path(bin_path)


def general_lm_path() -> Path:
    ps = _pocketsphinx()
    return Path(ps.get_model_path("en-us/en-us.lm.bin"))


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "firstwords" / "speech_lm"


def general_arpa(cache_dir: str | Path | None = None) -> Path:
    """pocketsphinx's general English model as an ARPA file, written once per model file into the cache."""
    src = general_lm_path()
    digest = hashlib.sha256(src.read_bytes()).hexdigest()[:16]
    cache = Path(cache_dir) if cache_dir else _cache_dir()
    out = cache / f"en-us-{digest}.arpa"
    if out.is_file():
        return out
    cache.mkdir(parents=True, exist_ok=True)
    ps = _pocketsphinx()
    ps.set_loglevel("FATAL")
    model = ps.NGramModel.readfile(str(src))
    _fix_trie_counts(model, src)
    tmp = out.with_suffix(f".tmp-{os.getpid()}")
    model.write(str(tmp), ps.NGramModel.str_to_type("arpa"))
    os.replace(tmp, out)
    log.info("wrote the general model as ARPA: %s (%.0f MB)", out, out.stat().st_size / 1e6)
    return out


def _fix_trie_counts(model, src: Path) -> None:
    """Set the loaded trie's bigram count to the number of real bigrams (see the module doc). The model object
    (a Cython wrapper: object header, virtual table, then the `ngram_model_t *`) is read through ctypes; the
    counts are compared with the file's header before anything is written."""
    header = src.read_bytes()[:32]
    if not header.startswith(b"Trie Language Model") or header[19] != 3:
        raise DataError(f"{src}: not a pocketsphinx trigram trie; cannot convert it to ARPA")
    counts = tuple(int.from_bytes(header[20 + 4 * i:24 + 4 * i], "little") for i in range(3))
    real = _KNOWN_TRIE_FIX.get(counts)
    if real is None:
        return  # another model file: trust its header
    if type(model).__basicsize__ != 32:
        raise DataError("this pocketsphinx build lays out its NGramModel differently; install pocketsphinx "
                        "5.1.1 (pip install 'pocketsphinx==5.1.1') to build the speech language model")
    lm = ctypes.c_void_p.from_address(id(model) + 24).value
    n_counts = ctypes.c_void_p.from_address(lm + 8).value if lm else None
    seen = tuple(ctypes.c_uint32.from_address(n_counts + 4 * i).value for i in range(3)) if n_counts else ()
    if seen != counts:
        raise DataError(f"pocketsphinx's loaded model does not match its file header ({seen} vs {counts}); "
                        "install pocketsphinx 5.1.1 to build the speech language model")
    ctypes.c_uint32.from_address(n_counts + 4).value = real


# ------------------------------------------------------------------------------------------- the mixture

def domain_arpa(sentences: list[str], path: str | Path) -> Path:
    """A trigram model of the training sentences (pocketsphinx's own ARPA builder, absolute discounting)."""
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
    found, idx = _lookup(keys_by_order[n - 1], _keys(np.where(grams < 0, 0, grams)))
    found &= (grams >= 0).all(axis=1)
    out[found] = model.logp[n - 1][idx[found]]
    rest = ~found & ok
    if rest.any():
        ctx = grams[rest, :-1]
        cfound, cidx = _lookup(keys_by_order[n - 2], _keys(np.where(ctx < 0, 0, ctx)))
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
        ctx_found, ctx_idx = _lookup(keys[n - 1], _keys(child[:, :-1]))
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
    found, _ = _lookup(lower_keys, _keys(grams[:, :-1]))
    return grams[found]


def prune(model: Arpa, max_ngrams: int) -> list[np.ndarray]:
    """The n-grams (orders >= 2) kept when at most `max_ngrams` of them may stay: those of largest joint
    probability p(h) p(w | h), p(h) taken as the unigram probability of the context's first word."""
    grams = [g for g in model.grams]
    rest = [(n, i) for n in range(1, model.order) for i in range(len(grams[n]))]
    if len(rest) <= max_ngrams:
        return grams
    score = np.concatenate([model.logp[n] + model.logp[0][grams[n][:, 0]] for n in range(1, model.order)])
    cut = np.sort(score)[::-1][max_ngrams - 1]
    start = 0
    for n in range(1, model.order):
        s = score[start:start + len(grams[n])]
        start += len(grams[n])
        grams[n] = grams[n][s >= cut]
    for n in range(2, model.order):  # a trigram whose bigram went goes too
        grams[n] = _closed(grams[n], _keys(grams[n - 1]), grams[n - 1])
    return grams


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
            u = _closed(u, _keys(grams[-1]), grams[-1])
        u = u[np.argsort(_keys(u), kind="stable")]
        pg = _logprob(general, g_keys, g_of_union[u]) if n <= general.order else None
        pd = _logprob(domain, d_keys, d_of_union[u])
        if pg is None:
            pg = _logprob(general, g_keys, g_of_union[u[:, -general.order:]])
        mix = weight * 10.0 ** pd + (1.0 - weight) * 10.0 ** pg
        grams.append(u)
        logp.append(np.where(mix > 0, np.log10(np.maximum(mix, 1e-99)), NEG))
    return _renormalise(words, grams, logp)


def build_domain_lm(train_json: str | Path | list[str], out_dir: str | Path, weight: float = DOMAIN_WEIGHT,
                    max_general_ngrams: int | None = None, cache_dir: str | Path | None = None) -> dict:
    """Build the bundle's speech language model from the training sentences (a CVCL train.json or a list of
    utterances) into out_dir/speech_lm.bin. Returns the manifest's `speech` entry."""
    import tempfile

    if isinstance(train_json, (str, Path)):
        try:
            data = json.loads(Path(train_json).read_text(encoding="utf-8"))["data"]
            sentences = [str(r["utterance"]) for r in data]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise DataError(f"{train_json}: cannot read the training sentences ({e}); give a CVCL train.json") from e
    else:
        sentences = [str(s) for s in train_json]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    general = read_arpa(general_arpa(cache_dir))
    with tempfile.TemporaryDirectory(prefix="firstwords-lm-") as tmp:
        domain = read_arpa(domain_arpa(sentences, Path(tmp) / "domain.arpa"))
        mixed = interpolate(general, domain, weight, max_general_ngrams)
        arpa_to_bin(write_arpa(mixed, Path(tmp) / "mixed.arpa"), out / LM_FILE)
    info = {"lm": LM_FILE, "kind": "interpolated", "domain_weight": weight,
            "general": f"pocketsphinx {_pocketsphinx_version()} en-us.lm.bin",
            "ngrams": [len(g) for g in mixed.grams], "domain_sentences": len(sentences),
            "max_general_ngrams": int(max_general_ngrams or 0)}
    log.info("speech LM: %s n-grams (domain weight %.2f) -> %s", info["ngrams"], weight, out / LM_FILE)
    return info


def _pocketsphinx_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("pocketsphinx")
    except metadata.PackageNotFoundError:
        return "unknown"


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
