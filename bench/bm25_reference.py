#!/usr/bin/env python3
"""The reference BM25 for `kontextual-bench --only quality`.

A plain, well-known BM25 (the `bm25s` library, Lucene variant, k1 = 1.5,
b = 0.75) with a Snowball English stemmer and English stop words, over the
same extracted text Kontextual indexes for each document's body (one field:
no titles, no boosts). Kontextual's search is measured against it on the
same judged queries in the same run.

Needs: pip install bm25s PyStemmer

Usage: bm25_reference.py DOCS.jsonl QUERIES.txt K
  DOCS.jsonl: one {"id": ..., "text": ...} per line
  QUERIES.txt: one query per line
  -> prints a JSON list, per query, of the top-K document ids in rank order
"""

import json
import sys

import bm25s
import Stemmer


def main() -> None:
    docs_path, queries_path, k = sys.argv[1], sys.argv[2], int(sys.argv[3])
    ids, texts = [], []
    with open(docs_path, encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            ids.append(d["id"])
            texts.append(d["text"])
    with open(queries_path, encoding="utf-8") as f:
        queries = [q.rstrip("\n") for q in f if q.strip()]
    stemmer = Stemmer.Stemmer("english")
    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize(texts, stopwords="en", stemmer=stemmer, show_progress=False), show_progress=False)
    out = []
    for q in queries:
        # as words, not ids: ids from a separate tokenize call would name
        # the query's own vocabulary, not the index's
        words = bm25s.tokenize(q, stopwords="en", stemmer=stemmer, return_ids=False, show_progress=False)[0]
        words = [w for w in words if w in retriever.vocab_dict]
        if not words:
            out.append([])
            continue
        results, scores = retriever.retrieve([words], k=min(k, len(ids)), show_progress=False)
        out.append([ids[i] for i, s in zip(results[0], scores[0]) if s > 0])
    print(json.dumps(out))


if __name__ == "__main__":
    main()
