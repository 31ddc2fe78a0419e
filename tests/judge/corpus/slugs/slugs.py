"""String helpers: slugs, truncation, title case."""

import re

_SMALL = {"a", "an", "and", "of", "the", "in", "on"}


def slugify(text, sep="-"):
    text = text.strip().lower()
    text = re.sub(r"[^a-z0-9]+", sep, text)
    return text.strip(sep)


def truncate(text, width, ellipsis="..."):
    if width < len(ellipsis):
        raise ValueError("width shorter than the ellipsis")
    if len(text) <= width:
        return text
    return text[: width - len(ellipsis)] + ellipsis


def title_case(text):
    words = text.split()
    out = []
    for i, w in enumerate(words):
        if i > 0 and w.lower() in _SMALL:
            out.append(w.lower())
        else:
            out.append(w[:1].upper() + w[1:].lower())
    return " ".join(out)
