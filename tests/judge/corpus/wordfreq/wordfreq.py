"""Word frequencies of a text."""

import re

_WORD = re.compile(r"[a-z']+")


def words(text):
    return _WORD.findall(text.lower())


def frequencies(text, stopwords=()):
    counts = {}
    for w in words(text):
        if w in stopwords:
            continue
        counts[w] = counts.get(w, 0) + 1
    return counts


def top(text, n=3, stopwords=()):
    if n < 1:
        raise ValueError("n must be >= 1")
    freq = frequencies(text, stopwords)
    ranked = sorted(freq.items(), key=lambda kv: (-kv[1], kv[0]))
    return ranked[:n]


def lexical_density(text):
    ws = words(text)
    if not ws:
        return 0.0
    return len(set(ws)) / len(ws)
