"""Application metrics: values the agent reports (p99 latency, throughput) and loopback
Prometheus scrapes, kept with timestamps and summarised over a window."""

from __future__ import annotations

import ipaddress
import math
import re
import threading
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from lumos_mcp.errors import InvalidMetricError, ScrapeError, ScrapeRefusedError

METRIC_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:-]{0,127}$")
METRIC_UNIT = re.compile(r"^[A-Za-z0-9_%/.\u00b5-]{1,24}$")
MAX_SCRAPE_BYTES = 4 * 1024 * 1024
# The largest |value| an app metric may have: sums, squares and slopes over an hour of such
# values stay finite (two values of 1.7e308 made the mean overflow to inf, emitted as null).
MAX_APP_VALUE = 1e100


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (``q`` in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    pos = (len(ordered) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


class AppMetrics:
    """Timestamped values per metric name, bounded in names and in points per name."""

    def __init__(self, clock: Callable[[], float], capacity: int = 3600, max_metrics: int = 256) -> None:
        self.clock = clock
        self.capacity = capacity
        self.max_metrics = max_metrics
        self._series: dict[str, deque[tuple[float, float]]] = {}
        self._units: dict[str, str] = {}
        self._lock = threading.Lock()

    def report(self, name: str, value: float, unit: str) -> None:
        """Store ``value`` (in ``unit``) for ``name`` at the clock's now.

        Raises:
            InvalidMetricError: a name or unit outside the patterns, a value that is not a finite
                number of at most ``MAX_APP_VALUE`` in size, a unit different from the one this name was
                first reported with, or too many names.
        """
        if not isinstance(name, str) or not METRIC_NAME.match(name):
            raise InvalidMetricError("name must match " + METRIC_NAME.pattern, name=name, value=value)
        if not isinstance(unit, str) or not METRIC_UNIT.match(unit):
            raise InvalidMetricError("unit must match " + METRIC_UNIT.pattern, name=name, value=value)
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise InvalidMetricError("value must be a finite number", name=name, value=value)
        if abs(value) > MAX_APP_VALUE:
            raise InvalidMetricError(f"|value| must be at most {MAX_APP_VALUE:g}", name=name, value=value)
        with self._lock:
            known = self._units.get(name)
            if known is not None and known != unit:
                raise InvalidMetricError(f"{name} is reported in {known}, not {unit}", name=name, value=value)
            if known is None and len(self._series) >= self.max_metrics:
                raise InvalidMetricError(f"at most {self.max_metrics} app metrics", name=name, value=value)
            self._units[name] = unit
            self._series.setdefault(name, deque(maxlen=self.capacity)).append((self.clock(), float(value)))

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._series)

    def series(self, since: float | None = None) -> dict[str, list[tuple[float, float]]]:
        """``{name: [(t, value), ...]}`` oldest first, optionally from ``since`` on."""
        with self._lock:
            copied = {k: list(v) for k, v in self._series.items()}
        if since is None:
            return copied
        return {k: [p for p in v if p[0] >= since] for k, v in copied.items()}

    def summaries(self, since: float, now: float) -> tuple[list[dict[str, Any]], dict[str, str]]:
        """Last, mean and p95 of each metric over ``[since, now]``; names without a value there are
        reported as unavailable."""
        out: list[dict[str, Any]] = []
        missing: dict[str, str] = {}
        with self._lock:
            units = dict(self._units)
        for name, points in sorted(self.series(since).items()):
            values = [v for t, v in points if t <= now]
            if not values:
                missing[f"app.{name}"] = "no value reported in the window"
                continue
            out.append(
                {
                    "name": name,
                    "unit": units[name],
                    "last": values[-1],
                    "mean": sum(values) / len(values),
                    "p95": percentile(values, 95),
                    "count": len(values),
                    "last_age_s": max(0.0, now - points[-1][0]),
                }
            )
        return out, missing

    def summary(self, name: str, since: float, now: float) -> dict[str, Any] | None:
        """``summaries(since, now)``'s entry for ``name`` alone (None: no value there), reading only
        the points from ``since`` on: reports are stamped in clock order under the lock, so the
        walk back stops at the first older one (the guards' per-sample cost; no copy of the series)."""
        points: list[tuple[float, float]] = []
        with self._lock:
            series = self._series.get(name)
            if series is None:
                return None
            unit = self._units[name]
            for point in reversed(series):
                if point[0] < since:
                    break
                points.append(point)
        points.reverse()
        values = [v for t, v in points if t <= now]
        if not values:
            return None
        return {
            "name": name,
            "unit": unit,
            "last": values[-1],
            "mean": sum(values) / len(values),
            "p95": percentile(values, 95),
            "count": len(values),
            "last_age_s": max(0.0, now - points[-1][0]),
        }


# --------------------------------------------------------------------------- Prometheus text format
@dataclass(frozen=True)
class PromSample:
    """One sample line; ``type`` comes from its ``# TYPE`` line (``untyped`` without one)."""

    name: str
    labels: Mapping[str, str]
    value: float
    type: str


_SUFFIXES = ("_bucket", "_sum", "_count", "_total", "_created")
_PROM_NAME = re.compile(r"^[A-Za-z_:][A-Za-z0-9_:]*")


def _parse_labels(text: str, line: str) -> tuple[dict[str, str], str]:
    """Parse ``{a="x",b="y"}`` at the start of ``text``; returns labels and the rest.

    Raises:
        ScrapeError: a malformed label set.
    """
    labels: dict[str, str] = {}
    i = 1
    while True:
        while i < len(text) and text[i] in " ,":
            i += 1
        if i < len(text) and text[i] == "}":
            return labels, text[i + 1 :]
        m = re.match(r"[A-Za-z_][A-Za-z0-9_]*", text[i:])
        if m is None or text[i + m.end() : i + m.end() + 2] != '="':
            raise ScrapeError(f"bad label set in {line!r}", url="(text)")
        key = m.group(0)
        i += m.end() + 2
        value: list[str] = []
        while True:
            if i >= len(text):
                raise ScrapeError(f"unterminated label value in {line!r}", url="(text)")
            c = text[i]
            if c == "\\" and i + 1 < len(text):
                nxt = text[i + 1]
                value.append("\n" if nxt == "n" else nxt)
                i += 2
            elif c == '"':
                i += 1
                break
            else:
                value.append(c)
                i += 1
        labels[key] = "".join(value)


def parse_prometheus_text(text: str) -> list[PromSample]:
    """Parse the Prometheus text exposition format (version 0.0.4).

    Raises:
        ScrapeError: a sample line that is not ``name[{labels}] value [timestamp]``.
    """
    types: dict[str, str] = {}
    samples: list[PromSample] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            parts = line.split(None, 3)
            if len(parts) >= 4 and parts[1] == "TYPE":
                types[parts[2]] = parts[3].strip()
            continue
        m = _PROM_NAME.match(line)
        if m is None:
            raise ScrapeError(f"bad sample line {line!r}", url="(text)")
        name, rest = m.group(0), line[m.end() :]
        labels: dict[str, str] = {}
        if rest.startswith("{"):
            labels, rest = _parse_labels(rest, line)
        tokens = rest.split()
        if not tokens:
            raise ScrapeError(f"no value in {line!r}", url="(text)")
        try:
            value = float(tokens[0])
        except ValueError:
            raise ScrapeError(f"bad value in {line!r}", url="(text)") from None
        kind = types.get(name)
        if kind is None:
            base = next((name[: -len(s)] for s in _SUFFIXES if name.endswith(s) and name[: -len(s)] in types), None)
            kind = types[base] if base is not None else "untyped"
        samples.append(PromSample(name, MappingProxyType(labels), value, kind))
    return samples


def loopback_url(url: str) -> str:
    """The URL to fetch if ``url`` is http(s) on a loopback address; ``localhost`` becomes 127.0.0.1
    so that no resolver can send the request elsewhere.

    Raises:
        ScrapeRefusedError: another scheme, a host that is not a loopback IP or ``localhost``, or credentials.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ScrapeRefusedError("only http and https", url=url)
    if parts.username or parts.password:
        raise ScrapeRefusedError("no credentials in the URL", url=url)
    host = parts.hostname or ""
    if host == "localhost":
        ip = ipaddress.ip_address("127.0.0.1")
    else:
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            raise ScrapeRefusedError("the host must be a loopback IP or localhost", url=url) from None
    if not ip.is_loopback:
        raise ScrapeRefusedError("the host is not a loopback address", url=url)
    try:
        port = parts.port
    except ValueError:
        raise ScrapeRefusedError("bad port", url=url) from None
    netloc = f"[{ip}]" if ip.version == 6 else str(ip)
    if port is not None:
        netloc += f":{port}"
    return urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a redirect could leave loopback: treat it as the final answer (an HTTP error)


def scrape_prometheus(url: str, timeout_s: float = 2.0, max_bytes: int = MAX_SCRAPE_BYTES) -> list[PromSample]:
    """Fetch and parse a loopback Prometheus endpoint (blocking: call it from a worker thread).

    No proxy is used and no redirect is followed.

    Raises:
        ScrapeRefusedError: the URL is not on loopback.
        ScrapeError: connection failure, an HTTP error, a body over ``max_bytes``, or a malformed text.
    """
    target = loopback_url(url)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())
    request = urllib.request.Request(target, headers={"Accept": "text/plain;version=0.0.4"})
    try:
        with opener.open(request, timeout=timeout_s) as response:
            body = response.read(max_bytes + 1)
    except urllib.error.HTTPError as e:
        e.close()
        raise ScrapeError(f"HTTP {e.code}", url=url, status=e.code) from None
    except (urllib.error.URLError, OSError) as e:
        raise ScrapeError(str(getattr(e, "reason", e)), url=url) from None
    if len(body) > max_bytes:
        raise ScrapeError(f"body larger than {max_bytes} bytes", url=url)
    try:
        return parse_prometheus_text(body.decode("utf-8", errors="replace"))
    except ScrapeError as e:
        raise ScrapeError(e.detail, url=url) from None


def app_metric_name(sample: PromSample, prefix: str = "") -> str:
    """An app metric name for a Prometheus series: ``prefix + name`` plus its label values."""
    parts = [prefix + sample.name] + [sample.labels[k] for k in sorted(sample.labels)]
    return re.sub(r"[^A-Za-z0-9_.:-]", "_", ".".join(parts))[:128]
