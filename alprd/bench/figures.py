"""Small SVG figures of the bench report: the confidence along one vehicle pass, and the scene with
every read's box labelled with its plate and confidence."""

from __future__ import annotations

import html
from typing import Any

LABEL_FONT = 14  # px at the scene's display size: legible without zooming
CHAR_W = 0.62  # a monospace character's width in font sizes, to size a label's background
MAX_LABELS = 80  # beyond this the scene is a carpet of labels; the boxes are still drawn


def conf_colour(c: float) -> str:
    return "#1a9850" if c >= 0.9 else "#d9a000" if c >= 0.7 else "#d73027"


def confidence_chart(points: list[tuple[float, float]], floor: float | None = None) -> str:
    """Per-frame read confidence (0..1) over video seconds of one pass; `floor`: the publishing floor."""
    W, H, pad = 312, 64, 4
    if not points:
        return ""
    points = sorted(points)
    t0, t1 = points[0][0], points[-1][0]
    span = max(t1 - t0, 1e-6)

    def xy(t: float, c: float) -> tuple[float, float]:
        x = pad + (W - 2 * pad) * ((t - t0) / span if t1 > t0 else 0.5)
        return x, pad + (H - 2 * pad - 12) * (1 - c)

    parts = [f'<svg class="conf-chart" width="{W}" height="{H}" viewBox="0 0 {W} {H}" xmlns="http://www.w3.org/2000/svg">',
             f'<rect x="0" y="0" width="{W}" height="{H - 12}" fill="#f0f0f0"/>']
    if floor is not None:
        _, fy = xy(t0, floor)
        parts.append(f'<line x1="0" x2="{W}" y1="{fy:.1f}" y2="{fy:.1f}" stroke="#999" stroke-dasharray="3,3"/>')
    if len(points) > 1:
        parts.append('<polyline fill="none" stroke="#333" stroke-width="1.5" points="'
                     + " ".join("{:.1f},{:.1f}".format(*xy(t, c)) for t, c in points) + '"/>')
    parts += [f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{conf_colour(c)}"><title>{t:.2f} s: {c:.2f}</title></circle>'
              for (t, c), (x, y) in ((p, xy(*p)) for p in points)]
    parts.append(f'<text x="{pad}" y="{H - 2}" font-size="10">{t0:.2f} s</text>'
                 f'<text x="{W / 2}" y="{H - 2}" font-size="10" text-anchor="middle">confidence per frame '
                 f'({len(points)} reads)</text><text x="{W - pad}" y="{H - 2}" font-size="10" text-anchor="end">'
                 f'{t1:.2f} s</text></svg>')
    return "".join(parts)


def _overlaps(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def place_labels(boxes: list[tuple[float, float, float, float]], sizes: list[tuple[float, float]],
                 width: float, height: float) -> list[tuple[float, float] | None]:
    """Top-left corner of each label (in order: the first placed win), above its box, else below it,
    else stacked further up, never over another label; None where no free place is near."""
    placed: list[tuple[float, float, float, float]] = []
    out: list[tuple[float, float] | None] = []
    for (x1, y1, _, y2), (w, h) in zip(boxes, sizes):
        x = min(max(0.0, x1), max(0.0, width - w))
        tries = [y1 - h - 1, y2 + 1] + [y1 - h - 1 - k * (h + 1) for k in range(1, 6)]
        spot = None
        for y in tries:
            r = (x, y, x + w, y + h)
            if 0 <= y and y + h <= height and not any(_overlaps(r, p) for p in placed):
                spot = r
                break
        if spot is None:
            out.append(None)
            continue
        placed.append(spot)
        out.append((spot[0], spot[1]))
    return out


def scene_svg(image_uri: str, img_w: int, img_h: int, scale: float, reads: list[dict[str, Any]],
              roi: list[tuple[float, float]] | None = None) -> str:
    """The scene image with each read's box and a label (plate, confidence) on a dark background; the
    most confident reads are labelled first, so a crowded scene keeps the labels that matter."""
    boxes = [tuple(v * scale for v in p["box"]) for p in reads]
    order = sorted(range(len(reads)), key=lambda i: -reads[i]["confidence"])[:MAX_LABELS]
    texts = {i: f'{reads[i]["plate"]} {reads[i]["confidence"]:.2f}' for i in order}
    sizes = [(len(texts[i]) * LABEL_FONT * CHAR_W + 8, LABEL_FONT + 6.0) for i in order]
    spots = place_labels([boxes[i] for i in order], sizes, img_w, img_h)  # type: ignore[misc]
    parts = [f'<svg class="scene" width="{img_w}" height="{img_h}" viewBox="0 0 {img_w} {img_h}" '
             f'xmlns="http://www.w3.org/2000/svg"><image href="{image_uri}" x="0" y="0" width="{img_w}" '
             f'height="{img_h}"/>']
    if roi:
        parts.append('<polygon fill="none" stroke="#00c8ff" stroke-width="2" points="'
                     + " ".join(f"{x * (img_w - 1):.1f},{y * (img_h - 1):.1f}" for x, y in roi) + '"/>')
    for p, (x1, y1, x2, y2) in zip(reads, boxes):
        parts.append(f'<rect x="{x1:.1f}" y="{y1:.1f}" width="{x2 - x1:.1f}" height="{y2 - y1:.1f}" fill="none" '
                     f'stroke="{conf_colour(p["confidence"])}" stroke-width="2"/>')
    for i, (w, h), spot in zip(order, sizes, spots):
        if spot is None:
            continue
        x, y = spot
        parts.append(f'<g class="label"><rect x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{h:.1f}" rx="2" '
                     f'fill="#000" fill-opacity="0.75" stroke="{conf_colour(reads[i]["confidence"])}"/>'
                     f'<text x="{x + 4:.1f}" y="{y + h - 5:.1f}" font-family="monospace" font-size="{LABEL_FONT}" '
                     f'fill="#fff">{html.escape(texts[i])}</text></g>')
    parts.append("</svg>")
    return "".join(parts)
