"""Privacy by default: nothing leaves the device, raw frames and audio are not kept, and forgetting is real.

- No network code in edge/ (syntax-tree scan), and a replay of the sample session run in a subprocess whose
  every socket / URL / HTTP event is refused by an audit hook completes, having tried none.
- The same replay writes no media: the only files it opens for writing are the memory database's, no image or
  audio file appears in its work or temp folders, and no BLOB in the database is larger than an embedding.
- `firstwords forget --word W` / `--since T` on a memory learned from the sample session: the word's text is
  gone from the raw bytes of the database file and its -wal (vacuumed, secure_delete).
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]

NETWORK_MODULES = {"socket", "ssl", "urllib", "urllib2", "urllib3", "http", "requests", "httpx", "aiohttp",
                   "ftplib", "smtplib", "poplib", "imaplib", "nntplib", "telnetlib", "xmlrpc", "websocket",
                   "websockets", "paramiko", "grpc", "socketserver", "webbrowser", "zmq", "paho"}
NETWORK_PROGRAMS = ("curl", "wget", "ssh", "scp", "rsync", "nc", "ncat", "ftp")
MEDIA_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".webp", ".gif", ".tif", ".tiff", ".npy", ".npz",
                  ".wav", ".flac", ".mp3", ".ogg", ".opus", ".raw", ".pcm", ".avi", ".mp4", ".mkv", ".mov",
                  ".webm", ".h264"}


def network_uses(source: str, filename: str = "<src>") -> list[str]:
    tree = ast.parse(source, filename)
    docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                  if isinstance(n, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                  and n.body and isinstance(n.body[0], ast.Expr)
                  and isinstance(n.body[0].value, ast.Constant)}
    found = []
    for node in ast.walk(tree):
        mods = []
        if isinstance(node, ast.Import):
            mods = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            mods = [node.module or ""]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "__import__":
            mods = [a.value for a in node.args[:1]
                    if isinstance(a, ast.Constant) and isinstance(a.value, str)]
        found += [f"{filename}:{node.lineno}: imports {m}" for m in mods
                  if m.split(".")[0] in NETWORK_MODULES]
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            v = node.value
            if "://" in v and any(s in v for s in ("http://", "https://", "ftp://", "ws://", "wss://")):
                found.append(f"{filename}:{node.lineno}: URL in code {v[:60]!r}")
            if v.strip() in NETWORK_PROGRAMS:
                found.append(f"{filename}:{node.lineno}: runs network program {v!r}")
    return found


# systemd's notify protocol is a datagram to a local unix socket: the one socket import edge/ may have.
LOCAL_SOCKET_ONLY = {"edge/notify.py"}


def test_edge_has_no_network_code():
    files = sorted((ROOT / "edge").rglob("*.py"))
    assert len(files) > 15
    found = [f for p in files for f in network_uses(p.read_text(encoding="utf-8"), str(p.relative_to(ROOT)))
             if not (str(p.relative_to(ROOT)) in LOCAL_SOCKET_ONLY and f.endswith("imports socket"))]
    assert not found, "network code in the device runtime:\n" + "\n".join(found)
    for name in LOCAL_SOCKET_ONLY:
        src = (ROOT / name).read_text(encoding="utf-8")
        assert "AF_UNIX" in src and "AF_INET" not in src, f"{name} may open unix sockets only"


@pytest.mark.parametrize("snippet", ["import socket", "from urllib.request import urlopen", "import requests",
                                     "import http.client", "from ftplib import FTP", "import smtplib",
                                     "x = __import__('socket')", "u = 'https://example.com/model.onnx'",
                                     "subprocess.run(['curl', u])"])
def test_network_scanner_catches(snippet):
    assert network_uses(snippet), snippet


def test_network_scanner_ignores_docstrings_and_lookalikes():
    src = '"""See https://example.com for the paper."""\nimport sockets_of_feet_is_not_socket\nx = "curly"\n'
    assert network_uses(src) == []


# ------------------------------------------------------------------ a replay with the network cut off

HOOK = r"""
import json, os, sys
attempts, writes, programs = [], [], []
NET = ("socket.", "urllib.", "http.client.", "ftplib.", "smtplib.", "poplib.", "imaplib.", "nntplib.",
       "telnetlib.", "webbrowser.")
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC

def hook(event, args):
    if event.startswith(NET):
        attempts.append(event)
        raise PermissionError(f"network access blocked by the privacy test: {event}")
    if event == "open" and args and isinstance(args[0], (str, bytes, os.PathLike)):
        mode, flags = (args[1] if len(args) > 1 else None), (args[2] if len(args) > 2 else 0)
        if ((isinstance(mode, str) and any(c in mode for c in "wax+"))
                or (isinstance(flags, int) and flags & WRITE_FLAGS)):
            writes.append(os.fsdecode(args[0]))
    if event == "subprocess.Popen":
        programs.append(os.fsdecode(args[0]))

sys.addaudithook(hook)
import socket
def _refuse(*a, **k):
    attempts.append("socket call")
    raise PermissionError("network access blocked by the privacy test")
socket.socket.connect = _refuse
socket.create_connection = _refuse
socket.getaddrinfo = _refuse
"""

# `firstwords replay` as the CLI runs it (the command module's parser and run()), with the network cut off.
REPLAY = HOOK + r"""
import argparse
from firstwords.edge.commands import replay as command
parser = argparse.ArgumentParser()
command.add_arguments(parser)
rc = command.run(parser.parse_args(sys.argv[1:]))
print(json.dumps({"rc": rc, "attempts": attempts, "writes": writes, "programs": programs}))
"""


def test_the_network_guard_catches_a_connection_attempt():
    code = HOOK + r"""
import urllib.request
for attempt in (lambda: socket.socket(), lambda: urllib.request.urlopen("http://127.0.0.1:9/")):
    try:
        attempt()
    except Exception:
        pass
open(os.devnull, "w").close()
print(json.dumps({"attempts": attempts, "writes": writes}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert "socket.__new__" in res["attempts"] and len(res["attempts"]) >= 2
    assert os.devnull in res["writes"]


def _files(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file()}


def _replay_offline(sample, tmp_path: Path, words_from: str, *extra: str) -> tuple[dict, Path, Path]:
    work, tmp = tmp_path / "work", tmp_path / "tmp"
    work.mkdir()
    tmp.mkdir()
    memory = work / "memory.sqlite"
    before = _files(sample.session) | _files(sample.bundle)
    env = dict(os.environ, PYTHONPATH=str(ROOT), TMPDIR=str(tmp), HOME=str(tmp), http_proxy="http://127.0.0.1:9",
               https_proxy="http://127.0.0.1:9")
    proc = subprocess.run([sys.executable, "-c", REPLAY, str(sample.session), "--bundle", str(sample.bundle),
                           "--memory", str(memory), "--words-from", words_from, "--speed", "max", "--config",
                           "laptop", "--threads", "1", "-q", *extra], cwd=work, env=env, capture_output=True,
                          text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["rc"] == 0 and "errors:" not in proc.stdout, proc.stdout[-2000:]
    db = sqlite3.connect(f"file:{memory}?mode=ro", uri=True)
    out["stats"] = dict(zip(("episodes", "words"), (db.execute("SELECT COUNT(*) FROM episodes").fetchone()[0],
                                                     db.execute("SELECT COUNT(*) FROM words").fetchone()[0])))
    db.close()
    # inputs untouched, nothing added beside them
    assert _files(sample.session) | _files(sample.bundle) == before
    return out, work, tmp


def _check_no_media(out: dict, work: Path, tmp: Path, memory: Path, dim: int) -> None:
    # only the memory database is written (SQLite writes its -wal/-shm in C, not through Python's open)
    writes = {Path(w).resolve() for w in out["writes"]}
    allowed = {memory.resolve(), memory.with_name(memory.name + ".lock").resolve()}  # (+ its writer lock)
    others = [w for w in writes if w not in allowed and not str(w).startswith(str(tmp.resolve()))]
    assert not others, f"files written besides the memory: {others}"
    in_tmp = [w for w in writes if str(w).startswith(str(tmp.resolve()))]
    assert not [w for w in in_tmp if w.suffix.lower() in MEDIA_SUFFIXES], in_tmp
    for folder in (work, tmp):
        media = [p for p in _files(folder) if p.suffix.lower() in MEDIA_SUFFIXES]
        assert not media, f"media files written: {media}"
    assert {p.name for p in _files(work)} <= {memory.name, memory.name + "-wal", memory.name + "-shm",
                                              memory.name + ".lock"}
    # no BLOB in the database larger than an embedding (float32 [dim]), and no media column filled
    db = sqlite3.connect(f"file:{memory}?mode=ro", uri=True)
    try:
        for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'"):
            cols = [r[1] for r in db.execute(f"PRAGMA table_info({table})")]
            for c in cols:
                n = db.execute(f"SELECT MAX(LENGTH({c})) FROM {table} WHERE TYPEOF({c}) = "
                               f"'blob'").fetchone()[0]
                # the state table may hold the background's second moment: one D x D aggregate of every frame
                limit = 4 * dim * dim if table == "state" else 4 * dim
                assert n is None or n <= limit, (f"{table}.{c} holds a {n}-byte blob "
                                                 f"(an embedding is {4 * dim})")
            if table == "state":
                # one aggregate, not a per-moment record
                assert db.execute("SELECT COUNT(*) FROM state "
                                  "WHERE TYPEOF(value) = 'blob' AND LENGTH(value) > ?",
                                  (4 * dim,)).fetchone()[0] <= 1
        assert db.execute("SELECT COUNT(*) FROM episodes WHERE media IS NOT NULL").fetchone()[0] == 0
        assert db.execute("SELECT COUNT(*) FROM episodes").fetchone()[0] > 0
    finally:
        db.close()


def test_transcript_replay_offline_sends_nothing_and_keeps_no_media(sample, tmp_path):
    out, work, tmp = _replay_offline(sample, tmp_path, "transcript")
    assert out["attempts"] == [], f"network access tried: {out['attempts']}"
    assert out["stats"]["episodes"] > 10
    assert not any(Path(p).name in {"curl", "wget", "ssh"} for p in out["programs"])
    _check_no_media(out, work, tmp, work / "memory.sqlite", 16)


@pytest.mark.slow
def test_audio_replay_offline_sends_nothing_and_keeps_no_media(sample, tmp_path):
    if not sample.has_audio:
        pytest.skip("espeak-ng is not installed, so the sample session has no soundtrack")
    pytest.importorskip("pocketsphinx")
    out, work, tmp = _replay_offline(sample, tmp_path, "audio")
    assert out["attempts"] == [], f"network access tried: {out['attempts']}"
    assert out["stats"]["episodes"] > 0
    _check_no_media(out, work, tmp, work / "memory.sqlite", 16)


def test_keep_media_replay_keeps_only_small_thumbnails(sample, tmp_path):
    """--keep-media is the one way media gets stored: then episodes carry a thumbnail, and only that."""
    out, work, tmp = _replay_offline(sample, tmp_path, "transcript", "--keep-media")
    assert out["attempts"] == []
    db = sqlite3.connect(f"file:{work / 'memory.sqlite'}?mode=ro", uri=True)
    try:
        n, kept, biggest = db.execute("SELECT COUNT(*), COUNT(media), MAX(LENGTH(media)) FROM "
                                      "episodes").fetchone()
    finally:
        db.close()
    assert n > 10 and kept > 0.8 * n
    assert biggest < 64 * 1024  # a thumbnail, not the frame stream
    assert not [p for p in _files(work) | _files(tmp) if p.suffix.lower() in MEDIA_SUFFIXES]


def test_media_is_kept_only_when_asked(tmp_path):
    from firstwords.edge.memory import AssociativeMemory

    rng = np.random.default_rng(0)
    frames = rng.normal(size=(4, 16)).astype(np.float32)
    jpeg = b"\xff\xd8\xff\xe0" + b"pretend-jpeg" * 100
    for keep in (False, True):
        path = tmp_path / f"m{keep}.sqlite"
        with AssociativeMemory(path, 16, keep_media=keep) as mem:
            mem.learn(["ball"], frames, 1.0, "a ball", media=jpeg)
        db = sqlite3.connect(path)
        (stored,) = db.execute("SELECT media FROM episodes").fetchone()
        db.close()
        assert (stored == jpeg) if keep else (stored is None)
        assert (b"pretend-jpeg" in _raw(path)) == keep


# ------------------------------------------------------------------ forgetting is real (CLI)

def _raw(path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*") if p.is_file())


@pytest.fixture
def learned_memory(sample, tmp_path):
    out, work, _ = _replay_offline(sample, tmp_path, "transcript")
    return work / "memory.sqlite", out


# The command module run as `firstwords forget` runs it (its parser and run()), without needing every other
# command of the dispatcher to be importable.
FORGET = ("import argparse, sys\nfrom edge.commands import forget\np = argparse.ArgumentParser()\n"
          "forget.add_arguments(p)\nsys.exit(forget.run(p.parse_args(sys.argv[1:])))")


def _forget(memory: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", FORGET, "--memory", str(memory), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)),
                          check=False)


def _words(memory: Path) -> dict[str, int]:
    db = sqlite3.connect(f"file:{memory}?mode=ro", uri=True)
    try:
        return dict(db.execute("SELECT word, exposures FROM words"))
    finally:
        db.close()


def test_forget_word_cli_removes_every_trace_from_the_file(learned_memory):
    memory, _ = learned_memory
    words = _words(memory)
    # an object word of the sample session that the memory kept (capacity 200 keeps them all)
    word = next(w for w in ("shoe", "boot", "shirt", "pants", "bag") if w in words)
    assert word.encode() in _raw(memory)
    proc = _forget(memory, "--word", word)
    assert proc.returncode == 0, proc.stderr
    assert word not in _words(memory)
    raw = _raw(memory)
    assert word.encode() not in raw, "the forgotten word's text is still in the database file or its -wal"
    db = sqlite3.connect(f"file:{memory}?mode=ro", uri=True)
    try:
        assert db.execute("SELECT COUNT(*) FROM episodes WHERE text LIKE ?",
                          (f"%{word}%",)).fetchone()[0] == 0
        assert db.execute("PRAGMA quick_check").fetchone()[0] == "ok"
        assert db.execute("SELECT COUNT(*) FROM episodes").fetchone()[0] > 0  # the rest is still there
    finally:
        db.close()


def test_forget_since_cli_removes_the_recent_moments_from_the_file(learned_memory):
    memory, _ = learned_memory
    db = sqlite3.connect(f"file:{memory}?mode=ro", uri=True)
    late = db.execute("SELECT t, text FROM episodes WHERE t >= 30 ORDER BY t").fetchall()
    early = db.execute("SELECT COUNT(*) FROM episodes WHERE t < 30").fetchone()[0]
    db.close()
    assert late and early
    # text only said after t=30 (not also said earlier): must vanish from the file
    db = sqlite3.connect(f"file:{memory}?mode=ro", uri=True)
    early_texts = {t for (t,) in db.execute("SELECT text FROM episodes WHERE t < 30")}
    db.close()
    only_late = [text for _, text in late if len(text) >= 8 and not any(text in e for e in early_texts)]
    assert only_late
    proc = _forget(memory, "--since", "30")
    assert proc.returncode == 0, proc.stderr
    db = sqlite3.connect(f"file:{memory}?mode=ro", uri=True)
    try:
        assert db.execute("SELECT COUNT(*) FROM episodes WHERE t >= 30").fetchone()[0] == 0
        assert db.execute("SELECT COUNT(*) FROM episodes").fetchone()[0] == early
    finally:
        db.close()
    raw = _raw(memory)
    left = [text for text in only_late if text.encode() in raw]
    assert not left, f"forgotten utterances still in the file: {left[:3]}"


# ------------------------------------------------------------------ no socket at the system-call level

def _inet_sockets(strace_log: str) -> list[str]:
    """The lines of an `strace -f -e trace=socket,connect,sendto` log that open or use an internet socket."""
    return [line for line in strace_log.splitlines()
            if ("socket(AF_INET" in line or "sa_family=AF_INET" in line)]


def test_inet_socket_scanner_catches_what_onnxruntime_did():
    log = ('18819 socket(AF_INET, SOCK_DGRAM|SOCK_CLOEXEC|SOCK_NONBLOCK, IPPROTO_IP) = 8\n'
           '18819 connect(8, {sa_family=AF_INET, sin_port=htons(53), sin_addr=inet_addr("10.0.0.53")}, 16) = '
           '0\n18817 socket(AF_INET6, SOCK_DGRAM, IPPROTO_IP) = 8\n'
           '18819 connect(8, {sa_family=AF_UNIX, sun_path="/var/run/nscd/socket"}, 110) = -1 ENOENT\n'
           '18819 socket(AF_UNIX, SOCK_STREAM|SOCK_CLOEXEC|SOCK_NONBLOCK, 0) = 8\n')
    assert len(_inet_sockets(log)) == 3


def test_replay_at_real_time_opens_no_internet_socket_and_writes_no_cache(sample, tmp_path):
    """`firstwords replay` of the soundtrack (VAD + speech recognition + both towers) at real time for 16 s
    once it has started, under strace: onnxruntime's own telemetry uploader (C++, unseen by Python's audit
    hooks) looked the telemetry host up within seconds and kept an event queue under ~/.cache/Microsoft; with
    firstwords it must do neither. Stopped by SIGINT (the replay flushes and exits 130)."""
    strace = shutil.which("strace")
    if strace is None:
        pytest.skip("strace is not installed (tools/install_system_deps.sh installs it)")
    if not sample.has_audio:
        pytest.skip("espeak-ng is not installed, so the sample session has no soundtrack")
    pytest.importorskip("pocketsphinx")
    home, log, pidfile = tmp_path / "home", tmp_path / "strace.log", tmp_path / "replay.pid"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORT_")}
    env.update(HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"), TMPDIR=str(tmp_path))
    # sh writes its pid and becomes the replay (exec), so SIGINT goes to the replay itself, not to strace.
    cmd = [strace, "-f", "-qq", "-e", "trace=socket,connect,sendto", "-o", str(log),
           "sh", "-c", 'echo $$ > "$0"; exec "$@"', str(pidfile),
           sys.executable, "-m", "firstwords.edge.cli", "replay", str(sample.session), "--bundle",
           str(sample.bundle),
           "--memory", str(tmp_path / "memory.sqlite"), "--words-from", "audio", "--speed", "1", "--threads",
           "1",
           "-q"]
    # SIGINT back to its default in the child: a test run started in the background (as CI may be) has it
    # ignored, the child inherits that, and Python then installs no KeyboardInterrupt handler at all
    proc = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    watchdog = threading.Timer(300, proc.kill)
    watchdog.start()
    try:
        head = []
        for line in proc.stderr:  # the replay says "replaying frames: ..." when its sources are open
            head.append(line)
            if "replaying " in line:  # (a native library's unterminated message may stand before it)
                time.sleep(16)
                assert proc.poll() is None, f"the replay ended before it was stopped:\n{''.join(head)[:3000]}"
                os.kill(int(pidfile.read_text()), signal.SIGINT)
                break
        out, err = proc.communicate(timeout=280)
    finally:
        watchdog.cancel()
    err = "".join(head) + err
    if "ptrace" in err and "Operation not permitted" in err:
        pytest.skip(f"strace cannot trace here: {err.strip()[:200]}")
    # stopped by us, after flushing
    assert proc.returncode == 130, (proc.returncode, out[-1500:], err[:1500], err[-1500:])
    media = re.search(r"media ([0-9.]+) s in", out)
    assert media and float(media.group(1)) >= 12, f"the replay ran too briefly to tell:\n{out[-1500:]}"
    traced = log.read_text()
    assert _inet_sockets(traced) == [], "internet sockets opened:\n" + "\n".join(_inet_sockets(traced)[:10])
    cached = [str(p.relative_to(home)) for p in home.rglob("*") if p.is_file()]
    assert cached == [], f"written under HOME: {cached}"


@pytest.mark.parametrize("module", ["firstwords.edge.encode", "firstwords.edge.vad", "firstwords.export",
                                    "firstwords.edge.cli"])
def test_importing_firstwords_turns_onnxruntime_telemetry_off_before_onnxruntime_is_imported(module):
    """onnxruntime reads ORT_DISABLE_TELEMETRY when it is imported, so any firstwords entry point must have
    set it by then: the variable is set, and onnxruntime is not yet imported, right after importing the
    module."""
    code = (f"import os, sys\nimport {module}\n"
            "print(os.environ.get('ORT_DISABLE_TELEMETRY'), 'onnxruntime' in sys.modules)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORT_")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120,
                         check=True)
    assert out.stdout.split() == ["1", "False"], out.stdout + out.stderr[-1000:]
