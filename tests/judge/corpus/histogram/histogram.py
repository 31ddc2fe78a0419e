"""Fixed-width histograms."""


def bin_index(x, lo, width, bins):
    if width <= 0:
        raise ValueError("width must be positive")
    i = int((x - lo) // width)
    if i < 0:
        return 0
    if i >= bins:
        return bins - 1
    return i


def histogram(xs, lo, hi, bins):
    if bins < 1 or hi <= lo:
        raise ValueError("need bins >= 1 and hi > lo")
    width = (hi - lo) / bins
    counts = [0] * bins
    for x in xs:
        counts[bin_index(x, lo, width, bins)] += 1
    return counts


def render(counts, char="#"):
    peak = max(counts) if counts else 0
    lines = []
    for c in counts:
        bar = char * c if peak <= 40 else char * round(c * 40 / peak)
        lines.append(f"{c:3d} {bar}")
    return "\n".join(lines)
