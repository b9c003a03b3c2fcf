"""Inline SVG plots for the review pages: no image files, no JavaScript, nothing but numbers in markup.

The page's CSP forbids inline style attributes, so colours are SVG presentation attributes.
"""

from __future__ import annotations

import numpy as np
from markupsafe import Markup, escape

COLOURS = {"malignant": "#b3261e", "benign": "#2e7d32", "uncertain": "#a36b00", "not reviewed": "#8a8f98"}
WIDTH, HEIGHT, PAD = 640, 260, 40
BINS = 20


def score_histogram_svg(scores: dict[str, list[float]], *, threshold: float, bins: int = BINS) -> Markup:
    """Step histograms of scores per verdict (share of each group per bin) with the threshold marked."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    shares = {}
    for name, values in scores.items():
        if values:
            counts, _ = np.histogram(np.clip(values, 0, 1), edges)
            shares[name] = counts / len(values)
    top = max([float(s.max()) for s in shares.values()] + [0.1])
    plot_w, plot_h = WIDTH - 2 * PAD, HEIGHT - 2 * PAD

    def x(v: float) -> float:
        return PAD + v * plot_w

    def y(v: float) -> float:
        return HEIGHT - PAD - v / top * plot_h

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" '
        f'height="{HEIGHT}" role="img" aria-label="score distribution by verdict" id="score-plot">',
        f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" y2="{HEIGHT - PAD}" stroke="#333"/>',
        f'<line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{HEIGHT - PAD}" stroke="#333"/>',
    ]
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        parts.append(
            f'<text x="{x(tick):.1f}" y="{HEIGHT - PAD + 16}" font-size="11" text-anchor="middle">'
            f"{tick:g}</text>"
        )
    parts.append(
        f'<text x="{WIDTH / 2}" y="{HEIGHT - 6}" font-size="11" text-anchor="middle">'
        "malignant probability</text>"
    )
    parts.append(f'<text x="{PAD - 4}" y="{PAD - 8}" font-size="11">share of cases (max {top:.2f})</text>')
    for name, share in shares.items():
        points = [f"{x(0):.1f},{y(0):.1f}"]
        for i, value in enumerate(share.tolist()):
            points += [f"{x(edges[i]):.1f},{y(value):.1f}", f"{x(edges[i + 1]):.1f},{y(value):.1f}"]
        points.append(f"{x(1):.1f},{y(0):.1f}")
        colour = COLOURS.get(name, "#333")
        parts.append(
            f'<polyline points="{" ".join(points)}" fill="none" stroke="{colour}" stroke-width="2" '
            f'data-series="{escape(name)}"/>'
        )
    tx = x(min(max(threshold, 0.0), 1.0))
    parts.append(
        f'<line x1="{tx:.1f}" y1="{PAD}" x2="{tx:.1f}" y2="{HEIGHT - PAD}" stroke="#000" '
        'stroke-dasharray="4 3"/>'
    )
    parts.append(f'<text x="{tx + 4:.1f}" y="{PAD + 10}" font-size="11">threshold {threshold:.3f}</text>')
    for i, name in enumerate(shares):
        lx, ly = WIDTH - PAD - 150, PAD + 14 * i + 20
        colour = COLOURS.get(name, "#333")
        parts.append(
            f'<line x1="{lx}" y1="{ly - 4}" x2="{lx + 18}" y2="{ly - 4}" stroke="{colour}" stroke-width="2"/>'
        )
        parts.append(
            f'<text x="{lx + 24}" y="{ly}" font-size="11">{escape(name)} ({len(scores[name])})</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))
