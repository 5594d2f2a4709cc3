"""Seeded random fuzzing of the parsers that take outside input (YAML loader, policy, hotlist, NMEA,
gpsd JSON, the line splitter under the GPS readers, still image headers): a bounded number of
inputs each, and for every one the parser answers with its own one-line error or a value within
its documented limits; never another exception, never a long wait, never unbounded memory.

The inputs are mutations of real files (the shipped policy and hotlist example, generated NMEA
drives, gpsd reports) plus YAML/JSON/NMEA-specific hostile tokens; the seed is fixed so a failure
is reproducible, and the failing input is printed."""

from __future__ import annotations

import json
import random
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import jsonschema
import numpy as np
import pytest

from alprd.errors import ConfigError
from alprd.gps.fix import RANGES, Fix, fix_dict, in_range
from alprd.gps.nmea import NmeaParser, epoch_sentences, sentence
from alprd.gps.readers import GpsdReader, LineSplitter
from alprd.hotlist.hotlist import MAX_PLATE_CHARS, MAX_REASON_CHARS, HotlistError, read_hotlist
from alprd.privacy.policy import load_policy
from alprd.safe_yaml import parse_yaml
from alprd.sources.still import image_size

REPO = Path(__file__).resolve().parents[2]
GPS_SCHEMA = json.loads((REPO / "alprd" / "publish" / "schema" / "read-v1.schema.json").read_text())["properties"]["gps"]
T0 = 1_795_255_200_000

YAML_TOKENS = ["&a ", "*a", "[" * 40, "{" * 40, "}", "]", ": ", "- ", "\t", "!!python/object/apply:os.system ", "'", '"',
               "\x00", "\x9d", "\ufeff", "<<: ", "? ", "1e999", ".nan", "-.inf", "9" * 5000, "0x", "0b2", "2021-13-45",
               "1:60:99", "~", "|\n", ">-\n", "%YAML 1.1\n", "%TAG ! tag:x,2000:\n", "---\n", "...\n", "!!binary ",
               "!!set ", "!!omap ", "!local ", "#", "\\", "\r", "\u2028", "plate: ", "reason: ", ",", "\n- "]


MAX_INPUT = 256 << 10  # bigger inputs are the size caps' business (test_hostile_input.py)


def mutate(rng: random.Random, text: str, tokens: list[str]) -> str:
    """A few random edits: insert a hostile token, replace a character, cut, repeat a line, splice;
    at most MAX_INPUT characters."""
    for _ in range(rng.randint(1, 5)):
        op = rng.randrange(6)
        i = rng.randrange(len(text) + 1)
        if op == 0:
            text = text[:i] + rng.choice(tokens) + text[i:]
        elif op == 1 and text:
            text = text[:i] + chr(rng.choice([rng.randrange(32, 127), rng.randrange(0, 0x3000)])) + text[i + 1:]
        elif op == 2:
            text = text[:i]
        elif op == 3:
            lines = text.splitlines(keepends=True)
            if lines:
                text += rng.choice(lines) * rng.randint(1, 50)
        elif op == 4:
            text = text[:i] + text[rng.randrange(len(text) + 1):]
        else:
            text = text[:i] + rng.choice(tokens) * rng.randint(2, 200) + text[i:]
    return text[:MAX_INPUT]


def fuzz(n: int, make: Callable[[random.Random], Any], check: Callable[[Any], None], seed: int) -> None:
    """`n` inputs from `make`, each given to `check`; fails naming the input on any exception
    `check` does not expect, on an input taking over 10 s (a hang, not a speed target: memory
    tracing slows parsing several times), or on an input making the parser hold 64 MiB more."""
    rng = random.Random(seed)
    tracemalloc.start()
    try:
        for k in range(n):
            item = make(rng)
            tracemalloc.reset_peak()
            before, _ = tracemalloc.get_traced_memory()
            t0 = time.perf_counter()
            try:
                check(item)
            except AssertionError:
                raise
            except Exception as e:  # pragma: no cover - the failure being looked for
                pytest.fail(f"input {k}: {type(e).__name__}: {e}\n{item!r:.3000}")
            took = time.perf_counter() - t0
            _, peak = tracemalloc.get_traced_memory()
            assert took < 10.0, f"input {k} took {took:.1f} s: {item!r:.300}"
            assert peak - before < 64 << 20, f"input {k} took {(peak - before) >> 20} MiB: {item!r:.300}"
    finally:
        tracemalloc.stop()


def one_line(e: Exception) -> None:
    assert "\n" not in str(e) and len(str(e)) < 4000, str(e)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_fuzz_yaml_loader_and_policy(tmp_path):
    seeds = [(REPO / "config" / "policy.yaml").read_text(), "a: 1\nb: [1, 2, {c: d}]\n"]
    path = tmp_path / "policy.yaml"

    def check(text: str) -> None:
        try:
            parse_yaml(text, source="x.yaml", what="config")
        except ConfigError as e:
            one_line(e)
        path.write_text(text)
        try:
            load_policy(path)
        except ConfigError as e:
            one_line(e)

    fuzz(300, lambda rng: mutate(rng, rng.choice(seeds), YAML_TOKENS), check, seed=1)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_fuzz_hotlist(tmp_path):
    csv_seed = (REPO / "config" / "hotlist.example.csv").read_text()
    yaml_seed = ("entries:\n  - {plate: AB123CD, reason: stolen, priority: 3, expires: 2099-01-01}\n"
                 "  - plate: XY 987\n    reason: wanted\n    expires: 1900000000\n")
    tokens = YAML_TOKENS + ['"', '""', "\r\n", ",,,,", "\x00", "a" * 200_000, "1" * 40, "-", "9999-12-31"]

    def make(rng: random.Random) -> tuple[str, str]:
        kind = rng.choice([".csv", ".yaml"])
        return kind, mutate(rng, csv_seed if kind == ".csv" else yaml_seed, tokens)

    def check(item: tuple[str, str]) -> None:
        kind, text = item
        path = tmp_path / f"h{kind}"
        path.write_text(text, errors="surrogatepass")
        try:
            loaded = read_hotlist(path)
        except HotlistError as e:
            one_line(e)
            return
        assert (loaded.entries or not loaded.skipped) and len(loaded.problems) <= min(loaded.skipped, 20)
        for e in loaded.entries:
            assert 1 <= len(e.plate) <= MAX_PLATE_CHARS and e.plate.isalnum() and e.plate.isascii()
            assert 0 < len(e.reason) <= MAX_REASON_CHARS and isinstance(e.priority, int)
        for problem in loaded.problems:
            assert problem.startswith(str(path)) and "\n" not in problem

    fuzz(400, make, check, seed=2)


def assert_fix_possible(fix: Fix | None) -> None:
    if fix is None:
        return
    for name in RANGES:
        value = getattr(fix, name, None)
        assert value is None or in_range(name, value), (name, value)
    if fix.heading is not None:
        assert fix.heading < 360
    d = fix_dict(fix, fix.time_ms + 100, 2000, "serial")
    jsonschema.Draft202012Validator(GPS_SCHEMA).validate(d)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_fuzz_nmea():
    drive = [s for k in range(3) for s in epoch_sentences(T0 + 1000 * k, 51.5 + k / 1e4, -0.14, 12.0, 45.0 * k)]
    tokens = [",", "*", "$", "-", ".", "9" * 30, "nan", "inf", "1e308", "-0", "N", "S", "E", "W", "A", "V", "GPRMC",
              "GNGGA", "VTG", "\x00", "\xff", " ", "+", "360", "9999.9999", "_1"]

    def make(rng: random.Random) -> list[str]:
        lines = []
        for _ in range(rng.randint(1, 12)):
            body = mutate(rng, rng.choice(drive)[1:-3], tokens)
            lines.append(sentence(body) if rng.random() < 0.8 else "$" + body)  # mostly valid checksums
        return lines

    def check(lines: list[str]) -> None:
        p = NmeaParser()
        for k, line in enumerate(lines):
            assert_fix_possible(p.feed(line, T0 + k))
            assert_fix_possible(p.feed(line.encode("utf-8", "surrogatepass"), T0 + k))

    fuzz(800, make, check, seed=3)


def random_json(rng: random.Random, depth: int = 0) -> Any:
    pick = rng.randrange(9 if depth < 3 else 6)
    if pick == 0:
        return rng.choice([None, True, False])
    if pick == 1:
        return rng.choice([0, -1, 3, 2**70, -(2**63)])
    if pick == 2:
        return rng.choice([0.5, -4.0, 1e308, -1e308, 91.0, 400.0, 51.5])
    if pick == 3:
        return rng.choice(["", "x", "2026-11-21T10:00:00Z", "2026-13-45T99:00:00Z", "TPV", "SKY", "9" * 5000])
    if pick == 4:
        return float("nan")
    if pick == 5:
        return rng.choice(["3", "-0.14"])
    if pick in (6, 7):
        return {rng.choice(["class", "mode", "lat", "lon", "speed", "track", "alt", "altMSL", "status", "time",
                            "hdop", "uSat", "satellites", "used"]): random_json(rng, depth + 1)
                for _ in range(rng.randint(0, 8))}
    return [random_json(rng, depth + 1) for _ in range(rng.randint(0, 5))]


@pytest.mark.timeout(300)
def test_fuzz_gpsd_reports():
    tpv = {"class": "TPV", "mode": 3, "status": 2, "time": "2026-11-21T10:00:00.000Z", "lat": 51.5, "lon": -0.14,
           "altMSL": 12.5, "speed": 8.25, "track": 271.3}
    sky = {"class": "SKY", "hdop": 0.8, "uSat": 11, "satellites": [{"used": True}]}
    reader = GpsdReader()

    def make(rng: random.Random) -> bytes:
        kind = rng.randrange(4)
        if kind == 0:
            return json.dumps(random_json(rng)).encode()
        base = dict(rng.choice([tpv, sky]))
        for _ in range(rng.randint(1, 4)):
            base[rng.choice(list(base) + ["class", "mode"])] = random_json(rng, 3)
        text = json.dumps(base)
        if kind == 3:
            text = mutate(rng, text, ["[", "{", "]", "}", ",", ":", '"', "\\u0000", "\\ud800", "1e999", "-"])
        return text.encode("utf-8", "surrogatepass")[:MAX_INPUT]

    def check(line: bytes) -> None:
        assert_fix_possible(reader.handle(line, T0))

    fuzz(2000, make, check, seed=4)
    assert set(reader.counts) <= {"garbage", "unsupported", "out_of_range", "tpv", "sky"}, reader.counts


@pytest.mark.timeout(120)
def test_fuzz_line_splitter():
    """Random chunkings of random streams: the lines come out as a plain split gives them, except
    those over the cap, which are counted; the buffer never holds more than the cap."""
    cap = 64

    def make(rng: random.Random) -> tuple[bytes, list[int]]:
        parts = [b"x" * rng.choice([0, 1, 10, 63, 64, 65, 200]) for _ in range(rng.randint(0, 30))]
        stream = b"\n".join(parts) + (b"\n" if rng.random() < 0.5 else b"")
        cuts = sorted(rng.randrange(len(stream) + 1) for _ in range(rng.randint(0, 10)))
        return stream, cuts

    def check(item: tuple[bytes, list[int]]) -> None:
        stream, cuts = item
        lines = LineSplitter(cap)
        out: list[bytes] = []
        for a, b in zip([0, *cuts], [*cuts, len(stream)]):
            out += lines.feed(stream[a:b])
            assert lines.pending() <= cap
        *complete, _ = stream.split(b"\n")
        assert out == [ln for ln in complete if len(ln) <= cap]
        long_tail = len(stream.split(b"\n")[-1]) > cap
        assert lines.overlong == sum(len(ln) > cap for ln in complete) + long_tail

    fuzz(3000, make, check, seed=5)


@pytest.mark.timeout(120)
def test_fuzz_image_headers():
    """Cut and bit-flipped image headers of every measured format: a size or None, never an exception."""
    img = np.zeros((30, 50, 3), np.uint8)
    seeds = [cv2.imencode(ext, img)[1].tobytes() for ext in (".png", ".jpg", ".bmp", ".webp", ".tif")]

    def make(rng: random.Random) -> bytes:
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(0, 6)):
            if data:
                data[rng.randrange(min(len(data), 64))] = rng.randrange(256)
        return bytes(data[: rng.choice([len(data), rng.randrange(len(data) + 1)])])

    def check(data: bytes) -> None:
        size = image_size(data)
        assert size is None or (len(size) == 2 and all(isinstance(v, int) and v >= 0 for v in size))

    fuzz(3000, make, check, seed=6)
    assert [image_size(s) for s in seeds] == [(50, 30)] * 5
