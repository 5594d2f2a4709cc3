"""Synthetic licence plates: layouts of the main regions, rendered with real TrueType fonts.

Fonts come from Debian packages (fonts-dejavu-core, fonts-liberation, fonts-freefont-ttf,
fonts-roboto-unhinted); nothing is downloaded. Pillow renders TrueType, OpenCV does the rest.
"""

from __future__ import annotations

import glob
import string
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

LETTERS = string.ascii_uppercase
DIGITS = string.digits

_FONT_PATTERNS = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSansCondensed-Bold.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSansMono-Bold.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSansNarrow-Bold.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationMono-Bold.ttf",
    "/usr/share/fonts/truetype/freefont/FreeSansBold.ttf",
    "/usr/share/fonts/truetype/roboto/unhinted/RobotoCondensed-Bold.ttf",
    "/usr/share/fonts/truetype/roboto/unhinted/RobotoCondensed-Medium.ttf",
    "/usr/share/fonts/truetype/roboto/unhinted/Roboto-Bold.ttf",
)


class FontsMissing(RuntimeError):
    pass


@lru_cache(maxsize=1)
def font_paths() -> tuple[str, ...]:
    found = tuple(p for pat in _FONT_PATTERNS for p in glob.glob(pat))
    if not found:
        raise FontsMissing(
            "no plate fonts found: install the Debian packages fonts-dejavu-core fonts-liberation "
            "fonts-freefont-ttf fonts-roboto-unhinted"
        )
    return found


@lru_cache(maxsize=256)
def _font(path: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, size)


@dataclass(frozen=True)
class Plate:
    image: np.ndarray  # BGR uint8, the plate face only (no background)
    text: str  # label: characters only, no spaces or dashes
    layout: str
    two_line: bool


def _pattern(rng: np.random.Generator, pattern: str) -> str:
    out = []
    for c in pattern:
        if c == "L":
            out.append(LETTERS[rng.integers(26)])
        elif c == "D":
            out.append(DIGITS[rng.integers(10)])
        elif c == "X":
            out.append((LETTERS + DIGITS)[rng.integers(36)])
        else:
            out.append(c)
    return "".join(out)


US_PATTERNS = ("LLLDDDD", "DLLLDDD", "DDDLLL", "LLLDDD", "LLDDDDD", "DLLDDD", "DDDDLL", "XXXXXX",
               "XXXXXXX", "LLL DDDD", "DDD LLL", "DDDLDD", "LDDDDD", "XXXXX", "DDLLLD")
EU_PATTERNS = {  # country code -> display patterns (space kept for rendering)
    "D": ("LL LL DDDD", "L LL DDD", "LLL L DDD"),
    "F": ("LL-DDD-LL",),
    "I": ("LL DDDLL",),
    "E": ("DDDD LLL",),
    "NL": ("LL-DDD-L", "DD-LLL-D", "L-DDD-LL"),
    "PL": ("LL DDDDD", "LLL DDLL"),
    "RO": ("B DDD LLL", "LL DD LLL"),
    "B": ("D-LLL-DDD",),
    "CZ": ("DLD DDDD",),
    "A": ("L DDDDD L",),
}
# The road look of European plates (layout eu_road, drawn only by name): the formats above plus
# Bucharest's two-digit serials (B 68 SPK), the commonest Romanian plate, which `EU_PATTERNS` lacks;
# kept apart so that the seeded test frames and videos drawn from LAYOUTS stay the same.
EU_ROAD_PATTERNS = {**EU_PATTERNS, "RO": ("B DD LLL", "B DDD LLL", "LL DD LLL"), "GB": ("LLDD LLL",)}
STATE_NAMES = ("CALIFORNIA", "TEXAS", "NEW YORK", "FLORIDA", "OHIO", "ILLINOIS", "GEORGIA", "UTAH",
               "ARIZONA", "OREGON", "NEVADA", "MAINE", "IOWA", "KANSAS", "VIRGINIA", "COLORADO")
BR_CITIES = ("SAO PAULO - SP", "CURITIBA - PR", "RIO DE JANEIRO - RJ", "BELO HORIZONTE - MG",
             "PORTO ALEGRE - RS", "CAMPINAS - SP", "SALVADOR - BA")


def _text_size(font: ImageFont.FreeTypeFont, text: str) -> tuple[int, int, int, int]:
    return font.getbbox(text)


def _draw_fitted(draw: ImageDraw.ImageDraw, text: str, box: tuple[int, int, int, int], color,
                 font_path: str, stretch: float = 1.0, left: bool = False) -> None:
    """Draw `text` filling `box` (x1,y1,x2,y2) by height, squeezing horizontally if needed; centred
    in the box's width, or from its left edge (`left`)."""
    x1, y1, x2, y2 = box
    bw, bh = x2 - x1, y2 - y1
    size = max(8, int(bh * 1.25))
    font = _font(font_path, size)
    l, t, r, b = _text_size(font, text)
    tw, th = r - l, b - t
    # Render on its own layer so the text can be scaled to the box exactly, like a plate die.
    layer = Image.new("L", (tw + 4, th + 4), 0)
    ImageDraw.Draw(layer).text((2 - l, 2 - t), text, font=font, fill=255)
    target_h = bh
    target_w = min(bw, int(tw * target_h / max(th, 1) * stretch))
    layer = layer.resize((max(1, target_w), max(1, target_h)), Image.BILINEAR)
    ox = x1 if left else x1 + (bw - target_w) // 2
    draw.bitmap((ox, y1), layer, fill=color)


def _random_color(rng: np.random.Generator, dark: bool) -> tuple[int, int, int]:
    if dark:
        base = rng.choice([(20, 20, 20), (20, 30, 120), (130, 20, 20), (10, 70, 30), (40, 40, 90)])
        return tuple(int(np.clip(c + rng.integers(-15, 16), 0, 255)) for c in base)
    base = rng.choice([(240, 240, 240), (235, 235, 225), (250, 245, 200), (225, 235, 245)])
    return tuple(int(np.clip(c + rng.integers(-20, 10), 0, 255)) for c in base)


def _us_background(rng: np.random.Generator, img: Image.Image) -> None:
    """Scenic US plates: a gradient, soft blobs of colour (mountains, sun, fields), sometimes a
    graphic in the middle that the characters are spaced around (Arizona's cactus)."""
    w, h = img.size
    a = np.array(_random_color(rng, dark=False), np.float32)
    b = np.array(_random_color(rng, dark=False), np.float32)
    if rng.random() < 0.5:
        b = 0.6 * b + 0.4 * np.array(rng.integers(80, 256, size=3), np.float32)  # a tinted sky or sunset
    t = np.linspace(0, 1, h if rng.random() < 0.7 else w, dtype=np.float32)
    grad = a + (b - a) * t[:, None]
    arr = np.repeat(grad[:, None, :], w, axis=1) if len(t) == h else np.repeat(grad[None, :, :], h, axis=0)
    for _ in range(int(rng.integers(0, 4))):
        cx, cy = rng.uniform(0, w), rng.uniform(0.3 * h, 1.2 * h)
        rx, ry = rng.uniform(0.1, 0.5) * w, rng.uniform(0.1, 0.4) * h
        yy, xx = np.mgrid[0:h, 0:w]
        blob = np.exp(-(((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2))[..., None]
        arr = arr * (1 - 0.5 * blob) + 0.5 * blob * np.array(rng.integers(60, 256, size=3), np.float32)
    img.paste(Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)))


def _us_sticker(rng: np.random.Generator, d: ImageDraw.ImageDraw, w: int, h: int, fp: str) -> None:
    """Registration stickers in the top corners: a coloured tab with a month or a year."""
    for left in (True, False):
        if rng.random() < 0.5:
            continue
        sw, sh = int(rng.uniform(0.08, 0.14) * w), int(rng.uniform(0.1, 0.18) * h)
        x = int(rng.uniform(0.01, 0.05) * w) if left else w - sw - int(rng.uniform(0.01, 0.05) * w)
        y = int(rng.uniform(0.02, 0.08) * h)
        colour = tuple(int(v) for v in rng.integers(0, 256, size=3))
        d.rectangle((x, y, x + sw, y + sh), fill=colour)
        tab = str(rng.choice(["JAN", "MAY", "NOV", "FEB", "JUN", "08", "10", "2006", "13", "24"]))
        _draw_fitted(d, tab, (x + 3, y + 3, x + sw - 3, y + sh - 3), (255, 255, 255) if sum(colour) < 380 else (0, 0, 0), fp)


VANITY_WORDS = ("DRIFTER", "BIGCHEESE", "GOBLUE", "LUVMYDOG", "SURFSUP", "TAXMAN", "MOMSTAXI", "NOTMINE",
                "GRWAPR", "ILUVNY", "BEACHY", "ROADTRIP", "HAPPY", "OLDNSLO", "BEEBEE", "ZOOM", "MOOSE",
                "DAD", "CEO", "LAWYER", "FASTER", "SLOWPOKE", "NOPE", "KOOL", "WOOHOO")


def _us_varied_serial(rng: np.random.Generator) -> str:
    """Serials the common formats miss: 2-4 characters (old, fleet and special plates), vanity words,
    and runs of one character (DELAWARE 200000), which slot readers tend to shorten or stretch."""
    k = rng.random()
    if k < 0.3:
        return _pattern(rng, str(rng.choice(["DDDD", "DDD", "XXXX", "LDDD", "DDDL", "LLDD", "DDLL", "LD", "DD", "XXX"])))
    if k < 0.45:
        word = str(rng.choice(VANITY_WORDS))
        return word if rng.random() < 0.7 else word[: int(rng.integers(3, len(word) + 1))]
    text = list(_pattern(rng, US_PATTERNS[rng.integers(len(US_PATTERNS))]).replace(" ", ""))
    if k < 0.8:  # a run of one character
        i = int(rng.integers(len(text)))
        run = int(rng.integers(2, 6))
        for j in range(i, min(len(text), i + run)):
            text[j] = text[i]
    return "".join(text)


def _access_symbol(d: ImageDraw.ImageDraw, box: tuple[int, int, int, int], ink) -> None:
    """The wheelchair pictogram of disabled-parking plates, often read as E or C."""
    x1, y1, x2, y2 = box
    s = min(x2 - x1, y2 - y1)
    x, y = x1 + (x2 - x1 - s) // 2, y1 + (y2 - y1 - s) // 2
    t = max(2, s // 9)
    d.ellipse((x + 0.38 * s, y, x + 0.56 * s, y + 0.18 * s), fill=ink)  # head
    d.line((x + 0.45 * s, y + 0.22 * s, x + 0.45 * s, y + 0.6 * s), fill=ink, width=t)  # back
    d.line((x + 0.45 * s, y + 0.6 * s, x + 0.75 * s, y + 0.6 * s), fill=ink, width=t)  # seat
    d.line((x + 0.75 * s, y + 0.6 * s, x + 0.88 * s, y + 0.95 * s), fill=ink, width=t)  # leg
    d.line((x + 0.45 * s, y + 0.36 * s, x + 0.7 * s, y + 0.36 * s), fill=ink, width=t)  # arm
    d.arc((x + 0.05 * s, y + 0.4 * s, x + 0.65 * s, y + s), 30, 330, fill=ink, width=t)  # wheel


def _us_side_marks(rng: np.random.Generator, d: ImageDraw.ImageDraw, box: tuple[int, int, int, int], ink,
                   fp: str) -> tuple[int, int]:
    """Marks beside the serial that are not part of it: two or three small letters stacked on one side
    (DC, HC, MC, a county code) and the access symbol. Returns the serial's new left and right edges."""
    x1, y1, x2, y2 = box
    h = y2 - y1
    left, right = x1, x2
    if rng.random() < 0.55:
        n = 2 if rng.random() < 0.8 else 3
        stack = _pattern(rng, str(rng.choice(["L" * n, "L" * n, "DL", "LD"][: 2 if n == 3 else 4])))
        sw = int(h * rng.uniform(0.25, 0.4))
        on_left = rng.random() < 0.65
        sx = left if on_left else right - sw
        step = h / len(stack)
        for i, c in enumerate(stack):
            _draw_fitted(d, c, (sx, int(y1 + i * step + 0.06 * step), sx + sw, int(y1 + (i + 1) * step - 0.06 * step)),
                         ink, fp)
        gap = int(h * rng.uniform(0.05, 0.2))
        if on_left:
            left += sw + gap
        else:
            right -= sw + gap
    if rng.random() < 0.35:
        s = int(h * rng.uniform(0.6, 0.95))
        symbol = ink
        if rng.random() < 0.5:  # on a tile of its own: light with the ink's colour, or the reverse
            tile = _random_color(rng, dark=False)
            if rng.random() < 0.4:
                tile, symbol = ink, tile
            d.rectangle((left, y1 + (h - s) // 2 - 3, left + s + 6, y1 + (h + s) // 2 + 3), fill=tile)
        _access_symbol(d, (left + 3, y1 + (h - s) // 2, left + 3 + s, y1 + (h + s) // 2), symbol)
        left += s + int(h * rng.uniform(0.08, 0.2))
    return left, max(right, left + h)


def render_us(rng: np.random.Generator, varied: bool = False, shown: str | None = None) -> Plate:
    """A US passenger plate. Real ones are scenic, with tall narrow characters (often spaced around a
    graphic), the state's name in a script or block face above or below, stickers, bolts and a
    dealer frame; the crops in ../shared/data show all of these.

    `varied` adds what the plain plate lacks and the real crops show: short and vanity serials,
    runs of one character, small stacked letters beside the serial and the access symbol, neither
    part of the plate number (see `_us_varied_serial`, `_us_side_marks`). `shown`: these characters
    (spaces and dashes drawn as gaps) instead of a random serial."""
    w, h = 480, 240
    img = Image.new("RGB", (w, h), _random_color(rng, dark=False))
    d = ImageDraw.Draw(img)
    fp = font_paths()[rng.integers(len(font_paths()))]
    scenic = rng.random() < 0.6
    if scenic:
        _us_background(rng, img)
    elif rng.random() < 0.5:
        band = _random_color(rng, dark=True)
        d.rectangle((0, int(h * 0.8), w, h), fill=tuple(int(c * 0.5 + 120) for c in band))
    if shown is not None:
        pass
    elif varied:
        shown = _us_varied_serial(rng)
    else:
        shown = _pattern(rng, US_PATTERNS[rng.integers(len(US_PATTERNS))])
    middle_graphic = False
    if " " not in shown and len(shown) >= 5 and rng.random() < 0.35:
        cut = len(shown) // 2 + int(rng.integers(-1, 2))
        middle_graphic = rng.random() < 0.5
        gap = "  " if middle_graphic else str(rng.choice([" ", "-", "·"]))
        shown = shown[:cut] + gap + shown[cut:]
    ink = _random_color(rng, dark=True)
    # Characters 45-60 % of the plate's height, narrow (plate dies are condensed gothic faces).
    top = int(rng.uniform(0.2, 0.3) * h)
    bottom = top + int(rng.uniform(0.45, 0.6) * h)
    if middle_graphic:
        cx, cy, r = w // 2 + int(rng.integers(-20, 21)), (top + bottom) // 2, int(rng.uniform(0.12, 0.22) * h)
        d.ellipse((cx - r, cy - r, cx + r, cy + r), fill=_random_color(rng, dark=rng.random() < 0.5))
    state = STATE_NAMES[rng.integers(len(STATE_NAMES))]
    state = state.title() if rng.random() < 0.4 else state
    state_box = (60, int(0.03 * h), w - 60, top - int(0.03 * h))
    if rng.random() < 0.25:  # state name at the bottom instead
        state_box = (60, bottom + int(0.05 * h), w - 60, min(h - 8, bottom + int(0.05 * h) + top - int(0.06 * h)))
    _draw_fitted(d, state, state_box, _random_color(rng, dark=True), fp, stretch=rng.uniform(0.9, 1.3))
    margin = int(rng.uniform(0.03, 0.12) * w)
    left, right = margin, w - margin
    if varied:
        left, right = _us_side_marks(rng, d, (left, top, right, bottom), ink, fp)
    _draw_fitted(d, shown, (left, top, right, bottom), ink, fp, stretch=rng.uniform(0.6, 1.15))
    if state_box[1] < top and rng.random() < 0.6:
        slogan = rng.choice(["DRIVE SAFELY", "LAND OF LINCOLN", "SUNSHINE STATE", "THE GREAT LAKES",
                             "VACATIONLAND", "GRAND CANYON STATE", "DONT MESS", "The Natural State",
                             "Land of Opportunity", "CELEBRATING STATEHOOD"])
        _draw_fitted(d, str(slogan), (90, bottom + int(0.06 * h), w - 90, min(h - 6, bottom + int(0.17 * h))),
                     _random_color(rng, dark=True), fp)
    _us_sticker(rng, d, w, h, fp)
    if rng.random() < 0.5:  # bolts
        for bx in (int(0.2 * w), int(0.8 * w)):
            for by in (int(0.1 * h), int(0.9 * h)):
                if rng.random() < 0.5:
                    d.ellipse((bx - 6, by - 6, bx + 6, by + 6), fill=(90, 90, 90))
    if rng.random() < 0.3:  # a dealer frame over the plate's edges
        fc = _random_color(rng, dark=True)
        t = int(rng.uniform(0.04, 0.08) * h)
        d.rectangle((0, 0, w, t), fill=fc)
        d.rectangle((0, h - 2 * t, w, h), fill=fc)
        d.rectangle((0, 0, t, h), fill=fc)
        d.rectangle((w - t, 0, w, h), fill=fc)
        if rng.random() < 0.6:
            _draw_fitted(d, str(rng.choice(["UNIVERSITY HONDA", "AUTO NATION", "CITY FORD", "GO BLUE"])),
                         (w // 4, h - 2 * t + 2, 3 * w // 4, h - 3), (230, 230, 230), fp)
    label = shown.replace(" ", "").replace("-", "").replace("·", "")
    return Plate(_to_bgr(img), label, "us", False)


def render_eu(rng: np.random.Generator, two_line: bool = False, road: bool = False,
              country: str | None = None, shown: str | None = None, band_gap: float | None = None) -> Plate:
    """An EU-band plate. `road`: as European plates look on the road, white (yellow for Dutch ones
    and British rear plates) with black characters, a third of them Romanian, the one European
    country whose real plates the project can measure (training/eval_sets). `country` (a code
    of EU_ROAD_PATTERNS) and `shown` (the characters, spaces and dashes kept): that plate, not a
    random one. `band_gap` (one-line plates): the characters start this share of the plate's width
    after the band instead of centred, as on Romanian plates, whose county letters sit close beside
    the band; a thin first letter there (the I of IF, Ilfov) is what a box at the band loses."""
    patterns = EU_ROAD_PATTERNS if road else EU_PATTERNS
    if country is not None:
        pass
    elif road and rng.random() < 0.33:
        country = "RO"
    else:
        country = list(patterns)[rng.integers(len(patterns))]
    if shown is None:
        pats = patterns[country]
        shown = _pattern(rng, pats[rng.integers(len(pats))])
    if road:
        yellow = country == "NL" or (country == "GB" and rng.random() < 0.5)
        bg = (245, 200, 20) if yellow else tuple(int(v) for v in rng.integers(225, 256, 3))
    else:
        yellow = country == "NL" or rng.random() < 0.1
        bg = (245, 200, 20) if yellow else _random_color(rng, dark=False)
    fp = font_paths()[rng.integers(len(font_paths()))]
    if two_line:
        w, h = 300, 214
    else:
        w, h = 520, 112
    img = Image.new("RGB", (w, h), bg)
    d = ImageDraw.Draw(img)
    d.rectangle((0, 0, w - 1, h - 1), outline=(10, 10, 10), width=4)
    strip_w = int(h * 0.38) if not two_line else 46
    d.rectangle((4, 4, strip_w, h - 5), fill=(20, 50, 160))
    _draw_fitted(d, country, (8, int(h * 0.6), strip_w - 4, int(h * 0.88)), (240, 240, 240), fp)
    ink = (15, 15, 15)
    if two_line:
        parts = shown.replace("-", " ").split(" ")
        top = parts[0]
        bottom = "".join(parts[1:]) if len(parts) > 1 else ""
        _draw_fitted(d, top, (strip_w + 10, 12, w - 10, 100), ink, fp)
        _draw_fitted(d, bottom, (strip_w + 10, 112, w - 10, h - 14), ink, fp)
    elif band_gap is not None:
        _draw_fitted(d, shown, (strip_w + int(band_gap * w), 14, w - 10, h - 14), ink, fp, left=True)
    else:
        _draw_fitted(d, shown, (strip_w + 10, 14, w - 10, h - 14), ink, fp)
    label = shown.replace(" ", "").replace("-", "")
    return Plate(_to_bgr(img), label, "eu2" if two_line else "eu", two_line)


def render_br_old(rng: np.random.Generator, shown: str | None = None) -> Plate:
    """A grey (or red) Brazilian plate of before 2018, `shown` (`ABC-1234`) or a random one."""
    w, h = 400, 130
    grey = int(rng.integers(170, 215))
    red = rng.random() < 0.15  # commercial plates are red with white text
    bg = (170, 30, 30) if red else (grey, grey, grey + int(rng.integers(-5, 6)))
    ink = (235, 235, 235) if red else (25, 25, 25)
    img = Image.new("RGB", (w, h), bg)
    d = ImageDraw.Draw(img)
    d.rectangle((0, 0, w - 1, h - 1), outline=ink, width=3)
    fp = font_paths()[rng.integers(len(font_paths()))]
    city = BR_CITIES[rng.integers(len(BR_CITIES))]
    _draw_fitted(d, city, (60, 6, w - 60, 30), ink, fp)
    shown = shown or _pattern(rng, "LLL-DDDD")
    _draw_fitted(d, shown, (14, 36, w - 14, h - 10), ink, fp)
    return Plate(_to_bgr(img), shown.replace("-", ""), "br", False)


def render_br_mercosur(rng: np.random.Generator, shown: str | None = None) -> Plate:
    """A Mercosur plate (2018 on), `shown` (`ABC1D23`) or a random one."""
    w, h = 400, 130
    img = Image.new("RGB", (w, h), (245, 245, 245))
    d = ImageDraw.Draw(img)
    d.rectangle((0, 0, w - 1, h - 1), outline=(20, 20, 20), width=4)
    d.rectangle((4, 4, w - 5, 30), fill=(20, 60, 170))
    fp = font_paths()[rng.integers(len(font_paths()))]
    _draw_fitted(d, "BRASIL", (150, 8, w - 150, 27), (245, 245, 245), fp)
    shown = shown or _pattern(rng, "LLLDLDD")
    _draw_fitted(d, shown, (16, 40, w - 16, h - 12), (15, 15, 15), fp)
    return Plate(_to_bgr(img), shown, "mercosur", False)


def render_two_line_us(rng: np.random.Generator) -> Plate:
    """Motorcycle / small plates: two stacked rows."""
    w, h = 280, 200
    img = Image.new("RGB", (w, h), _random_color(rng, dark=False))
    d = ImageDraw.Draw(img)
    fp = font_paths()[rng.integers(len(font_paths()))]
    top = _pattern(rng, rng.choice(["LLL", "DD", "DDD", "LL"]))
    bottom = _pattern(rng, rng.choice(["DDD", "DDDD", "LLL", "DDL"]))
    ink = _random_color(rng, dark=True)
    _draw_fitted(d, top, (20, 14, w - 20, 94), ink, fp)
    _draw_fitted(d, bottom, (20, 106, w - 20, h - 14), ink, fp)
    return Plate(_to_bgr(img), top + bottom, "us2", True)


LAYOUTS = {
    "us": (render_us, 0.34),
    "eu": (render_eu, 0.2),
    "eu2": (lambda rng: render_eu(rng, two_line=True), 0.06),
    "br": (render_br_old, 0.16),
    "mercosur": (render_br_mercosur, 0.16),
    "us2": (render_two_line_us, 0.08),
}
# Drawn only when asked for by name (the reader's training bank): a random draw keeps to LAYOUTS, so
# test frames and videos made from a seed stay the same.
EXTRA_LAYOUTS = {
    "us_varied": lambda rng: render_us(rng, varied=True),
    "eu_road": lambda rng: render_eu(rng, road=True),
}
LAYOUT_NAMES = (*LAYOUTS, *EXTRA_LAYOUTS)


def render_plate(rng: np.random.Generator, layout: str | None = None) -> Plate:
    if layout is None:
        names = list(LAYOUTS)
        weights = np.array([LAYOUTS[n][1] for n in names])
        layout = names[rng.choice(len(names), p=weights / weights.sum())]
    if layout in EXTRA_LAYOUTS:
        return EXTRA_LAYOUTS[layout](rng)
    if layout not in LAYOUTS:
        raise ValueError(f"unknown plate layout {layout!r}; valid: {', '.join(LAYOUT_NAMES)}")
    return LAYOUTS[layout][0](rng)


# Shop and street signs: big clean lettering a detector can take for a plate and a reader reads as
# surely as one (issue 32: signs, stickers and badges ranked above the plate). Not plates: they train
# nothing; they are what ranking reads must put after the plate (alprd/recognition/rank.py).
SIGN_WORDS = ("PARKING", "TAXI24", "HOTEL", "OPEN24H", "SALE", "BAR", "PHARMACY", "5OFF", "CAFE", "EXIT")
SIGN_COLOURS = (((0, 0, 0), (255, 255, 255)), ((255, 255, 255), (20, 60, 160)),
                ((200, 0, 0), (255, 255, 240)), ((255, 255, 0), (0, 0, 0)))  # (ink, ground), RGB


def render_sign(text: str, width: int, height: int, colours: tuple[tuple[int, int, int], tuple[int, int, int]]
                = SIGN_COLOURS[0], font_path: str | None = None) -> np.ndarray:
    """A flat sign face (BGR) with `text` filling it less a sixth of its height all round."""
    ink, ground = colours
    img = Image.new("RGB", (width, height), ground)
    m = height // 6
    _draw_fitted(ImageDraw.Draw(img), text, (m, m, width - m, height - m), ink, font_path or font_paths()[0])
    return _to_bgr(img)


def _to_bgr(img: Image.Image) -> np.ndarray:
    return cv2.cvtColor(np.asarray(img), cv2.COLOR_RGB2BGR)


# --- photometric and geometric degradation -------------------------------------------------


def degrade(rng: np.random.Generator, img: np.ndarray, strength: float = 1.0) -> np.ndarray:
    """Camera effects on a BGR image: blur, noise, glare, night/IR, occlusion, JPEG."""
    out = img.astype(np.float32)
    h, w = out.shape[:2]
    if rng.random() < 0.3 * strength:  # glare: a soft bright blob
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        yy, xx = np.mgrid[0:h, 0:w]
        r = rng.uniform(0.15, 0.5) * max(w, h)
        blob = np.exp(-(((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r)))[..., None]
        out = out + blob * rng.uniform(60, 160)
    if rng.random() < 0.25 * strength:  # night / IR: grey, dark or washed out, high gain noise
        g = cv2.cvtColor(np.clip(out, 0, 255).astype(np.uint8), cv2.COLOR_BGR2GRAY).astype(np.float32)
        if rng.random() < 0.5:
            g = 255 * (g / 255) ** rng.uniform(0.5, 0.9)  # IR-lit plate is bright
        else:
            g = g * rng.uniform(0.2, 0.5)
        out = np.repeat(g[..., None], 3, axis=2)
    alpha = rng.uniform(0.6, 1.3)
    beta = rng.uniform(-50, 40)
    out = out * alpha + beta
    if rng.random() < 0.15 * strength:  # partial occlusion: tow bar, bumper sticker, mud
        ow, oh = int(w * rng.uniform(0.05, 0.2)), int(h * rng.uniform(0.1, 0.5))
        ox, oy = int(rng.uniform(0, w - ow)), int(rng.uniform(0, h - oh))
        out[oy:oy + oh, ox:ox + ow] = rng.uniform(0, 255, size=3)
    out = np.clip(out, 0, 255).astype(np.uint8)
    k = rng.random()
    if k < 0.3 * strength:
        s = rng.uniform(0.4, 1.6)
        out = cv2.GaussianBlur(out, (0, 0), s)
    elif k < 0.45 * strength:  # motion blur along x
        n = int(rng.integers(3, 8))
        kern = np.zeros((n, n), np.float32)
        kern[n // 2, :] = 1.0 / n
        out = cv2.filter2D(out, -1, kern)
    if rng.random() < 0.6:
        sigma = rng.uniform(2, 12) * strength
        out = np.clip(out.astype(np.float32) + rng.normal(0, sigma, out.shape), 0, 255).astype(np.uint8)
    if rng.random() < 0.5:
        q = int(rng.integers(25, 90))
        ok, enc = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, q])
        if ok:
            out = cv2.imdecode(enc, cv2.IMREAD_COLOR)
    return out


def perspective_quad(rng: np.random.Generator, w: int, h: int, amount: float = 0.12) -> np.ndarray:
    """Random plate corners (tl, tr, br, bl) in a w x h frame: yaw, pitch and roll of a real camera."""
    src = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32)
    jitter = rng.uniform(-amount, amount, size=(4, 2)) * np.array([w, h], np.float32)
    roll = np.deg2rad(rng.uniform(-8, 8))
    c, s = np.cos(roll), np.sin(roll)
    centre = np.array([w / 2, h / 2], np.float32)
    rot = (src - centre) @ np.array([[c, -s], [s, c]], np.float32).T + centre
    return (rot + jitter).astype(np.float32)


def plate_crop(rng: np.random.Generator, plate: Plate, out_w: int = 256, out_h: int = 128) -> np.ndarray:
    """A crop as the detector would hand it to OCR: plate in perspective, loose margins, real-ish
    surroundings (a car-coloured field), then camera degradation."""
    ph, pw = plate.image.shape[:2]
    quad = perspective_quad(rng, pw, ph, amount=rng.uniform(0.0, 0.1))
    # Tight to loose: some detectors (and the US crop sets) cut right at the plate's edge.
    mx = rng.uniform(-0.02, 0.18) * pw
    my = rng.uniform(-0.03, 0.3) * ph
    quad = quad + np.array([mx, my], np.float32)
    cw, ch = int(pw + 2 * mx), int(ph + 2 * my)
    M = cv2.getPerspectiveTransform(np.array([[0, 0], [pw, 0], [pw, ph], [0, ph]], np.float32), quad)
    body = tuple(int(v) for v in rng.integers(0, 256, size=3))
    canvas = cv2.warpPerspective(plate.image, M, (cw, ch), borderMode=cv2.BORDER_CONSTANT, borderValue=body)
    crop = cv2.resize(canvas, (out_w, out_h), interpolation=cv2.INTER_AREA)
    # Small plates in the frame arrive low-resolution: downsample then upsample.
    if rng.random() < 0.5:
        f = rng.uniform(0.15, 0.6)
        small = cv2.resize(crop, (max(8, int(out_w * f)), max(4, int(out_h * f))), interpolation=cv2.INTER_AREA)
        crop = cv2.resize(small, (out_w, out_h), interpolation=cv2.INTER_LINEAR)
    return degrade(rng, crop)


# --- a European plate framed from its band -----------------------------------------------------


def band_edges(plate: Plate) -> tuple[int, int]:
    """(x of the EU band's inner edge, x of the first character's left edge) on a clean plate face
    of render_eu: the band is the face's blue columns, a character the first dark ink right of it."""
    img = plate.image.astype(np.int16)
    h, w = img.shape[:2]
    blue = img[h // 2, :, 0] - np.maximum(img[h // 2, :, 1], img[h // 2, :, 2]) > 80
    band = int(np.flatnonzero(blue).max()) + 1
    ink = (img[14:h - 14].max(axis=2) < 80).any(axis=0)
    ink[:band + 2] = False
    return band, int(np.argmax(ink))


def framed_from_band(rng: np.random.Generator, plate: Plate, into: float, width: int,
                     strength: float = 0.6) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """A scene with the EU `plate` `width` px wide on a car, and a detector's box of it whose left edge
    is `into` (a share of the plate's width) right of the first character's left edge (negative: left
    of it, in the gap or the band): how a detector that takes the band for no part of the plate frames
    it. Top, bottom and right edges are off by a few percent, as the detector's are; camera effects
    (`degrade` at `strength`) on the whole scene. Returns the frame and the box (x1, y1, x2, y2)."""
    _, first = band_edges(plate)
    ph0, pw0 = plate.image.shape[:2]
    height = max(4, round(ph0 * width / pw0))
    face = cv2.resize(plate.image, (width, height), interpolation=cv2.INTER_AREA)
    frame = np.empty((height * 5, width * 2, 3), np.uint8)
    # The car's body: white, silver, grey or black, as most are (a blue one hides the band's edges).
    frame[:] = np.clip(int(rng.integers(10, 246)) + rng.integers(-12, 13, size=3), 0, 255)
    ox, oy = width // 2, height * 2
    frame[oy:oy + height, ox:ox + width] = face
    frame = degrade(rng, frame, strength)
    x1 = ox + (first / pw0 + into) * width
    y1, y2 = oy + rng.normal(0, 0.04) * height, oy + height + rng.normal(0, 0.04) * height
    x2 = ox + width + rng.normal(0, 0.02) * width
    return frame, (round(x1), round(y1), round(x2), round(y2))
