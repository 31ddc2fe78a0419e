"""Run-length encoding."""


def encode(s):
    if not s:
        return []
    out = []
    current, count = s[0], 1
    for ch in s[1:]:
        if ch == current:
            count += 1
        else:
            out.append((current, count))
            current, count = ch, 1
    out.append((current, count))
    return out


def decode(pairs):
    parts = []
    for ch, n in pairs:
        if n < 1:
            raise ValueError(f"bad run length {n}")
        parts.append(ch * n)
    return "".join(parts)


def to_string(pairs):
    return "".join(f"{n}{ch}" if n > 1 else ch for ch, n in pairs)


def compression_ratio(s):
    if not s:
        return 1.0
    return len(to_string(encode(s))) / len(s)
