"""Back-off n-gram language models as numpy arrays: ARPA reading and writing, pocketsphinx's binary format, and
pocketsphinx's general English model as ARPA (see firstwords.export.lm for what they are used for).

The general model ships only as pocketsphinx's binary trie, whose ARPA writer (pocketsphinx 5.1.1) crashes on it:
the header counts six placeholder bigrams the trie keeps for pruned contexts, the writer walks only the real
ones and then sorts six empty rows. `general_arpa` loads the model, sets the in-memory bigram count to what the
writer will find (checked against the header's figures first) and writes the ARPA once into a cache folder
($XDG_CACHE_HOME/firstwords/speech_lm, ~100 MB; its parsed arrays beside it as .npz, ~140 MB).
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from firstwords.edge.errors import DataError, MissingExtraError

log = logging.getLogger(__name__)

NEG = -99.0  # log10 of "impossible" as ARPA files write it
_ID_BITS = 21  # word ids in an n-gram key: 2M words at most
# pocketsphinx 5.1.1's en-us.lm.bin: (unigrams, bigrams in the header, trigrams) and the bigrams it really holds
_KNOWN_TRIE_FIX = {(72547, 2051547, 1669625): 2051541}


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
        return keys_of(self.grams[n - 1])


def keys_of(grams: np.ndarray) -> np.ndarray:
    k = np.zeros(len(grams), np.int64)
    for j in range(grams.shape[1]):
        k = (k << _ID_BITS) | grams[:, j].astype(np.int64)
    return k


def lookup(sorted_keys: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(found mask, index) of keys in a sorted key array."""
    if len(sorted_keys) == 0:
        return np.zeros(len(keys), bool), np.zeros(len(keys), np.int64)
    idx = np.minimum(np.searchsorted(sorted_keys, keys), len(sorted_keys) - 1)
    return sorted_keys[idx] == keys, idx


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
        order_idx = np.argsort(keys_of(grams), kind="stable")
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


def pocketsphinx_module():
    try:
        import pocketsphinx
    except ImportError as e:
        raise MissingExtraError("building the speech language model needs pocketsphinx: "
                                "pip install 'firstwords[speech]'") from e
    return pocketsphinx


def arpa_to_bin(arpa_path: str | Path, bin_path: str | Path) -> Path:
    """ARPA -> pocketsphinx's trie binary (loads in a fraction of the time, less RAM)."""
    ps = pocketsphinx_module()
    ps.set_loglevel("FATAL")
    try:
        m, _lmath = _read_model(ps, arpa_path)
        m.write(str(bin_path), ps.NGramModel.str_to_type("bin"))
    except Exception as e:  # pocketsphinx raises ValueError / RuntimeError on bad models
        raise DataError(f"pocketsphinx could not convert {arpa_path} to its binary format: {e}") from e
    return Path(bin_path)


def _read_model(ps, path: str | Path):
    """(model, its LogMath). Not NGramModel.readfile: that frees the model's LogMath while the model still uses
    it, and the probabilities it writes are then garbage (-inf) depending on what reuses the memory."""
    lmath = ps.LogMath()
    return ps.NGramModel(ps.Config(), lmath, str(path)), lmath


def general_lm_path() -> Path:
    ps = pocketsphinx_module()
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
    ps = pocketsphinx_module()
    ps.set_loglevel("FATAL")
    model, _lmath = _read_model(ps, src)
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


def load_general(cache_dir: str | Path | None = None) -> Arpa:
    """The general model as arrays, parsed once and kept beside its ARPA file as .npz (loads in a second)."""
    arpa = general_arpa(cache_dir)
    npz = arpa.with_suffix(".npz")
    if npz.is_file():
        with np.load(npz, allow_pickle=False) as z:
            n = int(z["order"])
            return Arpa([str(w) for w in z["words"]], [z[f"grams{i}"] for i in range(n)],
                        [z[f"logp{i}"] for i in range(n)], [z[f"bow{i}"] for i in range(n)])
    model = read_arpa(arpa)
    arrays = {"order": np.array(model.order), "words": np.array(model.words)}
    for i in range(model.order):
        arrays.update({f"grams{i}": model.grams[i], f"logp{i}": model.logp[i], f"bow{i}": model.bow[i]})
    tmp = npz.with_suffix(f".tmp-{os.getpid()}.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, npz)
    return model


def write_dictionary(words: list[str], path: Path) -> list[str]:
    """Pronunciations of `words` from pocketsphinx's CMUdict (alternatives included) into `path`; returns the
    words it has none for (they cannot be heard)."""
    wanted = set(words) - {"<s>", "</s>", "<unk>"}
    found: set[str] = set()
    lines = []
    with open(pocketsphinx_module().get_model_path("en-us/cmudict-en-us.dict"), encoding="utf-8", errors="replace") as f:
        for line in f:
            word = re.sub(r"\(\d+\)$", "", line.split(" ", 1)[0])
            if word in wanted:
                lines.append(line if line.endswith("\n") else line + "\n")
                found.add(word)
    path.write_text("".join(lines), encoding="utf-8")
    missing = sorted(wanted - found)
    if missing:
        log.warning("speech LM: %d words have no pronunciation and cannot be heard: %s", len(missing),
                    ", ".join(missing[:20]))
    return missing


def pocketsphinx_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("pocketsphinx")
    except metadata.PackageNotFoundError:
        return "unknown"
