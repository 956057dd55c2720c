"""Hardware efficiency and noisy throughput: the columns the results tables add.

- ``flops_per_sec``: the FLOP/s a combination achieved, its model's declared training FLOPs
  per token (``flops_per_token`` in the record, from
  :attr:`harness.plugin.contracts.ModelSpec.flops_per_token`) times its tokens/sec.
- ``percent_of_peak``: that over the peak the manifest stores (``peak``,
  :func:`harness.machine.peak.run_peaks`) for the run's device, the record's precision and
  the thread count it started with (``torch_threads``); on a GPU the published peak where
  one is known, else the measured one. Blank when there is none (older run directories).
- ``tokens_per_sec_unreliable``: its throughput was measured on a noisy machine
  (:func:`unreliable_reasons`); blank when nothing was recorded to tell.

docs/reference/efficiency.md explains the rules and limits.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from harness.results.schema import Manifest, Record

SPREAD_LIMIT = 1.5
"""Tokens/sec is unreliable when the 90th percentile of a combination's interval
throughputs (epochs, or the spans between validations, after the first) exceeds the 10th
by more than this factor: the same work ran at two speeds."""
LOAD_LIMIT = 1.25
"""... or when the machine's 1-minute load average, sampled during training, exceeded
this many runnable threads per core (``os.cpu_count()``). The run's own threads count in
it, about one per core when it uses every core, so the limit leaves a quarter of a core
each for the rest of the machine before other work is taken to have slowed the run."""
PEAK_KEY = "peak"
"""Where the manifest keeps its peaks (a list of :class:`harness.machine.peak.Peak` as
JSON; absent in run directories older than it)."""
MARK = "†"
"""The Markdown mark of an unreliable tokens/sec."""
COLUMNS = ("flops_per_token", "flops_per_sec", "peak_flops_per_sec", "percent_of_peak",
           "throughput_spread", "max_load", "cpu_count", "tokens_per_sec_unreliable")
"""The per-record columns :func:`record_columns` gives, in the results frame's order."""


def throughput_spread(rates: Sequence[float | None],
                      threads: Sequence[int | None] | None = None) -> float | None:
    """The spread of interval throughputs ``rates`` (tokens/sec of each epoch or span,
    in order) after the first, which pays for warm-up: the 90th percentile over the 10th
    (numpy's linear interpolation), within each thread count (``threads``, one per
    interval: lent cores legitimately change the speed), the largest of those. None
    without two intervals at one thread count."""
    counts = list(threads) if threads is not None else [None] * len(rates)
    groups: dict[Any, list[float]] = {}
    for rate, count in list(zip(rates, counts))[1:]:
        if rate is not None and math.isfinite(rate) and rate > 0:
            groups.setdefault(count, []).append(float(rate))
    spreads = [float(np.percentile(v, 90) / np.percentile(v, 10))
               for v in groups.values() if len(v) >= 2]
    return max(spreads) if spreads else None


def interval_rates(curve: Sequence[Mapping[str, Any]]
                   ) -> tuple[list[float | None], list[int | None]]:
    """The tokens/sec of each span between validations of a held-out curve (cumulative
    ``tokens`` and training ``seconds`` per row, from 0) and each span's ``threads``."""
    rates: list[float | None] = []
    tokens = seconds = 0.0
    for row in curve:
        t, s = row.get("tokens"), row.get("seconds")
        if not isinstance(t, (int, float)) or not isinstance(s, (int, float)):
            rates.append(None)
            continue
        rates.append((t - tokens) / (s - seconds) if s > seconds else None)
        tokens, seconds = t, s
    return rates, [row.get("threads") for row in curve]


def unreliable_reasons(spread: Any, load: Any, cores: Any) -> list[str]:
    """Why a tokens/sec is unreliable, one phrase per reason ([] when it is not, or
    nothing was recorded to tell)."""
    reasons = []
    if _number(spread) is not None and spread > SPREAD_LIMIT:
        reasons.append(f"its interval throughputs spread {spread:.2f}x (90th over 10th "
                       f"percentile; limit {SPREAD_LIMIT:g}x)")
    if _number(load) is not None and _number(cores) and load > LOAD_LIMIT * cores:
        reasons.append(f"the 1-minute load average reached {load:.2f} on {cores:g} cores "
                       f"(limit {LOAD_LIMIT:g} per core)")
    return reasons


def is_unreliable(spread: Any, load: Any, cores: Any) -> bool | None:
    """True or False by :func:`unreliable_reasons`; None when neither the spread nor the
    load was recorded."""
    if _number(spread) is None and (_number(load) is None or not _number(cores)):
        return None
    return bool(unreliable_reasons(spread, load, cores))


def flagged(value: Any) -> bool:
    """Whether a ``tokens_per_sec_unreliable`` cell says unreliable (True, not None)."""
    return isinstance(value, (bool, np.bool_)) and bool(value)


def marked(cells: Sequence[str], flags: Sequence[Any]) -> list[str]:
    """Text cells with :data:`MARK` added where their row's ``tokens_per_sec_unreliable``
    is :func:`flagged`: tokens/sec, and the FLOP/s and % of peak made from it."""
    return [f"{cell} {MARK}" if cell and flagged(flag) else cell
            for cell, flag in zip(cells, flags)]


def manifest_peaks(manifest: Manifest | None) -> list[Mapping[str, Any]]:
    """The peaks ``manifest`` stores (well-formed entries only; [] for older runs)."""
    peaks = manifest.extra.get(PEAK_KEY) if manifest is not None else None
    if not isinstance(peaks, list):
        return []
    return [p for p in peaks if isinstance(p, Mapping) and _number(p.get("flops_per_sec"))]


def matching_peak(peaks: Iterable[Mapping[str, Any]], *, precision: str,
                  threads: int | None) -> Mapping[str, Any] | None:
    """The peak a record on ``threads`` threads in ``precision`` is a share of: a GPU's
    published one first, then one measured in that precision on a GPU (threads do not
    matter there) or on that many threads."""
    same = [p for p in peaks if p.get("precision") == precision]
    for peak in same:
        if peak.get("kind") == "published":
            return peak
    for peak in same:
        if peak.get("threads") is None or peak.get("threads") == threads:
            return peak
    return None


def record_precision(record: Record, manifest: Manifest | None) -> str:
    """The precision ``record`` trained in: its ``--set`` point's, else the run's."""
    recipe = manifest.settings.recipe if manifest is not None else {}
    return str(record.settings.get("precision") or recipe.get("precision") or "fp32")


def record_columns(record: Record, manifest: Manifest | None,
                   peaks: Sequence[Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """The :data:`COLUMNS` of one record (NaN or None where not recorded)."""
    peaks = manifest_peaks(manifest) if peaks is None else peaks
    flops = _number(record.extra.get("flops_per_token"))
    rate = record.metric("tokens_per_sec")
    achieved = flops * rate if flops is not None and _number(rate) is not None else None
    peak = matching_peak(peaks, precision=record_precision(record, manifest),
                         threads=record.torch_threads)
    peak_rate = _number(peak.get("flops_per_sec")) if peak is not None else None
    spread, load, cores = (_number(record.extra.get(k))
                           for k in ("throughput_spread", "max_load", "cpu_count"))
    return {
        "flops_per_token": _nan(flops), "flops_per_sec": _nan(achieved),
        "peak_flops_per_sec": _nan(peak_rate),
        "percent_of_peak": _nan(100 * achieved / peak_rate
                                if achieved is not None and peak_rate else None),
        "throughput_spread": _nan(spread), "max_load": _nan(load), "cpu_count": _nan(cores),
        "tokens_per_sec_unreliable": is_unreliable(spread, load, cores) if record.ok else None,
    }


def group_efficiency(ok: Any) -> dict[str, Any]:
    """A group's efficiency over its ok seeds' rows (a DataFrame with :data:`COLUMNS`):
    FLOPs per token, mean and sample std of the FLOP/s and % of peak, the largest spread
    and load, the cores, and whether any seed's tokens/sec is unreliable."""
    def stat(name: str, how: str) -> float:
        values = ok[name].dropna().astype(float) if name in ok else []
        if not len(values):
            return math.nan
        if how == "std":
            return float(values.std(ddof=1)) if len(values) > 1 else math.nan
        return float(getattr(values, how)())

    cells = ok["tokens_per_sec_unreliable"] if "tokens_per_sec_unreliable" in ok else []
    flags = [v for v in cells if isinstance(v, (bool, np.bool_))]
    return {"flops_per_token": stat("flops_per_token", "mean"),
            "flops_per_sec_mean": stat("flops_per_sec", "mean"),
            "flops_per_sec_std": stat("flops_per_sec", "std"),
            "percent_of_peak_mean": stat("percent_of_peak", "mean"),
            "percent_of_peak_std": stat("percent_of_peak", "std"),
            "throughput_spread": stat("throughput_spread", "max"),
            "max_load": stat("max_load", "max"), "cpu_count": stat("cpu_count", "max"),
            "tokens_per_sec_unreliable": any(bool(v) for v in flags) if flags else None}


GROUP_COLUMNS = ("flops_per_token", "flops_per_sec_mean", "flops_per_sec_std",
                 "percent_of_peak_mean", "percent_of_peak_std", "throughput_spread",
                 "max_load", "cpu_count", "tokens_per_sec_unreliable")
"""The per-group columns :func:`group_efficiency` gives, as the summary's last columns."""
TIMED = ("flops_per_sec_mean", "flops_per_sec_std", "percent_of_peak_mean",
         "percent_of_peak_std", "throughput_spread", "max_load", "tokens_per_sec_unreliable")
"""The per-group columns that depend on timing or on the machine's load, as tokens/sec
does: two runs of the same grid agree on every other one."""


def si(value: Any) -> str:
    """``1.23 G``: a FLOP/s figure for a Markdown cell ('' when missing)."""
    number = _number(value)
    if number is None:
        return ""
    for factor, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(number) >= factor:
            return f"{number / factor:.3g} {prefix}"
    return f"{number:.3g}"


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _nan(value: float | None) -> float:
    return math.nan if value is None else float(value)
