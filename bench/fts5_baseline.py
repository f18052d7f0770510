#!/usr/bin/env python3
"""The hand-written baseline for `kontextual-bench --only retrieval`.

What a user might write instead of Kontextual to make a directory of
documents searchable: Python's built-in sqlite3, one table for the documents
and an FTS5 table fed the same text, committed once. Timed from the first
file read until the commit returns (every document searchable); interpreter
start-up is excluded.

Usage: fts5_baseline.py CORPUS_DIR DB_PATH   -> prints {"docs": N, "seconds": S}
"""

import json
import os
import re
import sqlite3
import sys
import time

TAG = re.compile(r"<[^>]+>")


def text_of(name: str, data: bytes) -> str:
    text = data.decode("utf-8")
    if name.endswith((".html", ".htm")):
        text = TAG.sub(" ", text)
    return text


def main() -> None:
    root, db = sys.argv[1], sys.argv[2]
    start = time.perf_counter()
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(
        "CREATE TABLE docs (id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL, content BLOB NOT NULL)"
    )
    conn.execute("CREATE VIRTUAL TABLE docs_fts USING fts5(name, body)")
    n = 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for f in sorted(filenames):
            path = os.path.join(dirpath, f)
            name = os.path.relpath(path, root)
            with open(path, "rb") as fh:
                data = fh.read()
            cur = conn.execute("INSERT INTO docs (name, content) VALUES (?, ?)", (name, data))
            conn.execute(
                "INSERT INTO docs_fts (rowid, name, body) VALUES (?, ?, ?)",
                (cur.lastrowid, name, text_of(name, data)),
            )
            n += 1
    conn.commit()
    elapsed = time.perf_counter() - start
    # sanity: the index answers
    (hits,) = conn.execute("SELECT count(*) FROM docs_fts WHERE docs_fts MATCH 'zu*'").fetchone()
    conn.close()
    print(json.dumps({"docs": n, "seconds": elapsed, "sample_hits": hits}))


if __name__ == "__main__":
    main()
