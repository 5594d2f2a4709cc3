"""Prometheus metrics on a registry of our own (the global one would pick up whatever else the
process imports). Counts come from the daemon's health snapshot at scrape time, so they can never
disagree with /status or the stats topic; only the latency histograms are observed as work happens."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from alprd.recognition.recognizer import Timings

# Per frame: the detector runs in tens of ms on a CPU, OCR of a few plates in a few ms each.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class _HealthCollector(Collector):
    def __init__(self, health: Callable[[], dict[str, Any]]):
        self._health = health

    def collect(self) -> Iterator[Metric]:
        h = self._health()
        frames = CounterMetricFamily("alprd_frames", "Frames analysed, per camera", labels=["camera"])
        captured = CounterMetricFamily("alprd_frames_captured", "Frames the source delivered, per camera",
                                       labels=["camera"])
        reads = CounterMetricFamily("alprd_reads", "Read events (vehicle passes), per camera", labels=["camera"])
        up = GaugeMetricFamily("alprd_camera_up", "1 while the camera's source is running or finished normally",
                               labels=["camera"])
        for cam, c in h["cameras"].items():
            frames.add_metric([cam], c["frames"])
            captured.add_metric([cam], c["captured"])
            reads.add_metric([cam], c["reads"])
            up.add_metric([cam], 0 if c["state"] == "error" else 1)
        yield from (frames, captured, reads, up)
        published = CounterMetricFamily("alprd_messages_published", "Messages the primary broker acknowledged")
        published.add_metric([], h["published"])
        yield published
        dropped = CounterMetricFamily("alprd_messages_dropped", "Messages dropped before upload, by reason",
                                      labels=["reason"])
        for reason, n in sorted(h["dropped"].items()):
            dropped.add_metric([reason], n)
        yield dropped
        errors = CounterMetricFamily("alprd_analysis_errors", "Frames whose analysis failed")
        errors.add_metric([], h["errors"])
        yield errors
        yield GaugeMetricFamily("alprd_spool_depth", "Messages waiting in the primary spool", value=h["spool_depth"])
        yield GaugeMetricFamily("alprd_broker_connected", "1 while the primary broker is connected",
                                value=1 if h["broker"]["connected"] else 0)
        yield GaugeMetricFamily("alprd_uptime_seconds", "Seconds since the daemon started", value=h["uptime_s"])


class Metrics:
    def __init__(self, health: Callable[[], dict[str, Any]]):
        self.registry = CollectorRegistry()
        self.stage = Histogram("alprd_stage_seconds", "Time per frame in each recognition stage",
                               ["stage"], registry=self.registry, buckets=BUCKETS)
        self.registry.register(_HealthCollector(health))

    def observe(self, stage: str, seconds: float) -> None:
        self.stage.labels(stage).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class TimedRecognizer:
    """The shared recognizer, with each analysis's detect and OCR time observed: the recognizer
    already measures both (Timings); this only hands them on. Everything else passes through."""

    def __init__(self, base: Any, metrics: Metrics):
        self._base = base
        self._metrics = metrics

    def analyse(self, frame: Any, timings: Timings | None = None, **kwargs: Any) -> Any:
        t = timings if timings is not None else Timings()
        detect0, ocr0 = t.detect_ms, t.ocr_ms
        out = self._base.analyse(frame, t, **kwargs)
        self._metrics.observe("detect", (t.detect_ms - detect0) / 1000)
        self._metrics.observe("ocr", (t.ocr_ms - ocr0) / 1000)
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self._base, name)
