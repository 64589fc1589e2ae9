"""The memory database's schema and its versions: creating a new file, upgrading an older one."""

from __future__ import annotations

import sqlite3
import time

APP_ID = "firstwords-memory"
SCHEMA_VERSION = 2  # v2: episode_words.confidence (a v1 file is upgraded by a writable open)

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE state (key TEXT PRIMARY KEY, value);
CREATE TABLE words (
    word TEXT PRIMARY KEY,
    proto_sum BLOB NOT NULL,      -- float32 [D]: sum of credit-weighted frame embeddings
    weight REAL NOT NULL,         -- sum of credit (frames' worth)
    weight_sq REAL NOT NULL,      -- sum over moments of (credit per moment)^2, for the effective count
    cooc_sum BLOB NOT NULL,       -- float32 [D]: confidence-weighted sum of every frame of its windows
    cooc_count REAL NOT NULL,     -- confidence-weighted number of those frames
    exposures INTEGER NOT NULL,   -- moments in which the word was learned
    prior BLOB,                   -- float32 [D]: the encoder's utterance embedding, NULL if out of vocabulary
    first_seen REAL NOT NULL,
    last_seen REAL NOT NULL,
    last_utt INTEGER NOT NULL     -- utterance counter at last exposure (recency for eviction, unit-free)
);
CREATE TABLE episodes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    t REAL NOT NULL,
    text TEXT NOT NULL,
    embedding BLOB NOT NULL,      -- float32 [D]: re-entrance-weighted mean of the window's frame embeddings
    frame_sum BLOB NOT NULL,      -- float32 [D]: plain sum of the window's frame embeddings
    learned_mean BLOB NOT NULL,   -- float32 [D]: mean of the window's frames (what forgetting subtracts)
    n_frames INTEGER NOT NULL,
    media BLOB                    -- raw media, only with keep_media
);
CREATE INDEX episodes_t ON episodes(t);
CREATE TABLE episode_words (
    word TEXT NOT NULL,
    episode_id INTEGER NOT NULL,
    credit REAL NOT NULL,         -- the credit this word took from the episode (undone by forgetting)
    confidence REAL NOT NULL DEFAULT 1.0,  -- the recogniser's confidence in the word (undone likewise)
    PRIMARY KEY (word, episode_id)
) WITHOUT ROWID;
CREATE INDEX episode_words_ep ON episode_words(episode_id);
"""
# Made by the first `firstwords forget` that finds a writer running (edge.memory_forget), not with the file:
# a new memory takes as few pages as it can (it may be made on a nearly full card).
FORGET_REQUESTS = """
CREATE TABLE IF NOT EXISTS forget_requests (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,           -- 'word' or 'since'
    value TEXT NOT NULL,
    requested_at REAL NOT NULL,
    applied_at REAL,              -- NULL until the writer has applied it
    result TEXT                   -- JSON: what was removed
)"""
_UPGRADE_1_TO_2 = [
    "ALTER TABLE episode_words ADD COLUMN confidence REAL NOT NULL DEFAULT 1.0",
    "UPDATE meta SET value = '2' WHERE key = 'schema_version'",
]


def create_schema(db: sqlite3.Connection, dim: int) -> None:
    """Inside a transaction: the tables and the meta rows of a new memory."""
    for stmt in _SCHEMA.split(";"):  # one by one: executescript() would commit in the middle
        if stmt.strip():
            db.execute(stmt)
    db.executemany("INSERT INTO meta(key, value) VALUES (?, ?)", [
        ("app", APP_ID), ("schema_version", str(SCHEMA_VERSION)), ("dim", str(dim)),
        ("created_at", time.strftime("%Y-%m-%dT%H:%M:%S%z"))])


def upgrade_schema(db: sqlite3.Connection, version: int) -> None:
    """Inside a transaction: bring a file of an older schema version to SCHEMA_VERSION."""
    if version == 1:
        for stmt in _UPGRADE_1_TO_2:
            db.execute(stmt)


REQUIRED_TABLES = {"meta", "state", "words", "episodes", "episode_words"}
