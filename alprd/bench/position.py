"""The bench report's verdict on a camera position: the plate widths a video shows against the
detector's measured detection rate per plate width (models/manifest.json, alprd_train.width_report).

The detector sees a frame scaled to its input width, so a plate's chance depends on its width at the
detector's input: a plate `w` px wide in a `frame_w` px video at input width `input_w` counts as
`w * input_w / frame_w * curve.frame_width / curve.input_width` px against the curve."""

from __future__ import annotations

import html
from dataclasses import dataclass

import numpy as np

from alprd.recognition.manifest import WidthCurve

FINE = 0.9  # share of plates found from which a position is fine
MARGINAL = 0.75  # from here to FINE: it works, but a closer view would find more


@dataclass(frozen=True)
class Verdict:
    text: str
    level: str  # "ok", "marginal", "bad" or "unknown"
    rate: float | None  # the expected share of this video's plates the detector finds


def curve_scale(curve: WidthCurve, frame_width: int, input_width: int) -> float:
    """Video px -> px of the frames the curve was measured in."""
    return input_width / max(1, frame_width) * curve.frame_width / max(1, curve.input_width)


def expected_rate(widths: list[float], curve: WidthCurve, scale: float = 1.0) -> float | None:
    """The mean detection rate over the plates, each at its own width; None if no width has a rate."""
    rates = [r for r in (curve.rate_at(w * scale) for w in widths) if r is not None]
    return sum(rates) / len(rates) if rates else None


def verdict(widths: list[float], curve: WidthCurve | None, scale: float = 1.0) -> Verdict:
    if not widths:
        return Verdict("No plate was read in this video, so there are no widths to judge: check that the camera "
                       "sees plates at all (and the ROI and motion settings).", "unknown", None)
    lo, hi = (int(round(v)) for v in np.percentile(widths, [25, 75]))
    span = f"{lo} px" if lo == hi else f"{lo}-{hi} px"
    if curve is None:
        return Verdict(f"Most plates are {span} wide. The models' manifest has no measured detection rate per "
                       "width (python -m alprd_train.width_report), so the position cannot be judged here.",
                       "unknown", None)
    rate = expected_rate(widths, curve, scale)
    if rate is None:
        return Verdict(f"Most plates are {span} wide, a width the detector's measurement has no plates of.",
                       "unknown", None)
    found = f"Most plates are {span} wide, where the detector finds {round(rate * 100)} % of plates"
    if rate >= FINE:
        return Verdict(f"{found}: this position is fine.", "ok", rate)
    if rate >= MARGINAL:
        return Verdict(f"{found}: it works, but the camera closer or zoomed in would find more.", "marginal", rate)
    return Verdict(f"{found}: move the camera closer or zoom in.", "bad", rate)


def histogram_svg(widths: list[float], curve: WidthCurve | None, scale: float = 1.0) -> str:
    """Bars: this video's plates per width bin of the curve (in video px); a line: the detection rate."""
    W, H, left, right, top, bottom = 720, 230, 50, 50, 20, 50
    if curve is not None:
        bins = [(b.min_px / scale, None if b.max_px is None else b.max_px / scale, b.rate) for b in curve.bins]
    else:
        top_w = max(widths, default=100.0)
        step = max(10.0, float(np.ceil(top_w / 8 / 10) * 10))
        bins = [(i * step, (i + 1) * step if i < 7 else None, None) for i in range(8)]
    counts = [sum(1 for w in widths if w >= a and (b is None or w < b)) for a, b, _ in bins]
    peak = max(counts, default=0) or 1
    n = len(bins)
    bw = (W - left - right) / n
    ph = H - top - bottom

    def y_count(c: float) -> float:
        return top + ph * (1 - c / peak)

    parts = [f'<svg id="width-histogram" class="histogram" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
             'xmlns="http://www.w3.org/2000/svg">',
             f'<rect x="{left}" y="{top}" width="{W - left - right}" height="{ph}" fill="#f6f6f6"/>']
    for i, ((a, b, rate), c) in enumerate(zip(bins, counts)):
        x = left + i * bw
        label = f"{a:.0f}-{b:.0f} px" if b is not None else f"{a:.0f}+ px"
        rate_s = f", detector finds {rate:.0%}" if rate is not None else ""
        parts.append(f'<rect class="bar" x="{x + 3:.1f}" y="{y_count(c):.1f}" width="{bw - 6:.1f}" '
                     f'height="{top + ph - y_count(c):.1f}" fill="#4a7fc1"><title>{c} plates {label}{rate_s}'
                     '</title></rect>')
        if c:
            parts.append(f'<text x="{x + bw / 2:.1f}" y="{y_count(c) - 4:.1f}" font-size="12" text-anchor="middle">'
                         f'{c}</text>')
        parts.append(f'<text x="{x + bw / 2:.1f}" y="{H - bottom + 16}" font-size="12" text-anchor="middle">'
                     f'{html.escape(label)}</text>')
    pts = [(left + (i + 0.5) * bw, top + ph * (1 - r)) for i, (_, _, r) in enumerate(bins) if r is not None]
    if pts:
        parts.append('<polyline class="rate" fill="none" stroke="#d73027" stroke-width="2.5" points="'
                     + " ".join(f"{x:.1f},{y:.1f}" for x, y in pts) + '"/>')
        parts += [f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="#d73027"/>' for x, y in pts]
        parts.append(f'<text x="{W - right + 6}" y="{top + 4}" font-size="11" fill="#d73027">100 %</text>'
                     f'<text x="{W - right + 6}" y="{top + ph}" font-size="11" fill="#d73027">0 %</text>')
    parts.append(f'<text x="{left - 6}" y="{top + 4}" font-size="11" text-anchor="end">{peak}</text>'
                 f'<text x="{left - 6}" y="{top + ph}" font-size="11" text-anchor="end">0</text>'
                 f'<text x="{left + (W - left - right) / 2}" y="{H - 10}" font-size="12" text-anchor="middle">'
                 'plate width in this video (px): bars = vehicle passes, red line = detection rate</text></svg>')
    return "".join(parts)
