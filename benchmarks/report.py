"""Machine info, the figures of a run (median and min-max), the Markdown report and files.

Everything here works on plain data (the JSON the harness writes), so the rendering is
tested without a broker and a JSON file can be rendered again later.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson

from benchmarks.stats import summarize

__all__ = [
    "Figure",
    "figure",
    "machine_info",
    "parse_cpu_model",
    "parse_mem_total_bytes",
    "render_breakdown",
    "render_figures",
    "render_markdown",
    "render_profile",
    "write_results",
]

Figure = dict[str, Any]

_PACKAGES = (
    "faust-streaming",
    "river",
    "confluent-kafka",
    "aiokafka",
    "fastavro",
    "mode-streaming",
)


def parse_cpu_model(text: str) -> str | None:
    """The ``model name`` of the first CPU in the text of ``/proc/cpuinfo``.

    >>> parse_cpu_model("processor\\t: 0\\nmodel name\\t: AMD EPYC 7B13\\n")
    'AMD EPYC 7B13'
    """
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == "model name":
            return value.strip()
    return None


def parse_mem_total_bytes(text: str) -> int | None:
    """``MemTotal`` in bytes from the text of ``/proc/meminfo``.

    >>> parse_mem_total_bytes("MemTotal:       16314204 kB\\nMemFree: 1 kB\\n")
    16705744896
    """
    for line in text.splitlines():
        if line.startswith("MemTotal:"):
            parts = line.split()
            if len(parts) >= 3 and parts[2] == "kB" and parts[1].isdigit():
                return int(parts[1]) * 1024
    return None


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def machine_info() -> dict[str, Any]:
    """Cores, CPU model, RAM, load, OS, Python and library versions of this machine."""
    import confluent_kafka

    versions: dict[str, str | None] = {}
    for name in _PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    versions["librdkafka"] = confluent_kafka.libversion()[0]
    try:
        load: list[float] | None = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    return {
        "cores": os.cpu_count(),
        "cpu_model": parse_cpu_model(_read("/proc/cpuinfo")) or platform.processor() or None,
        "ram_bytes": parse_mem_total_bytes(_read("/proc/meminfo")),
        "load_average": load,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "versions": versions,
    }


# -- figures ------------------------------------------------------------------------------------


def figure(
    key: str, label: str, unit: str, values: Iterable[float | None], digits: int = 0
) -> Figure | None:
    """One row of the results: median, min and max over the runs; None if never measured."""
    summary = summarize(values)
    if summary is None:
        return None
    return {"key": key, "label": label, "unit": unit, "digits": digits, **summary.as_dict()}


def _num(value: float | None, digits: int) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def render_figures(figures: Sequence[Figure]) -> str:
    """The results table (Markdown): figure, median, min - max, unit, runs.

    >>> print(render_figures([{"label": "throughput", "unit": "events/s", "digits": 0,
    ...                        "median": 1500.4, "min": 1400, "max": 1620.9, "runs": 3}]))
    | figure | median | min - max | unit | runs |
    |---|---:|---:|---|---:|
    | throughput | 1,500 | 1,400 - 1,621 | events/s | 3 |
    """
    lines = ["| figure | median | min - max | unit | runs |", "|---|---:|---:|---|---:|"]
    for f in figures:
        digits = int(f.get("digits", 0))
        span = f"{_num(f['min'], digits)} - {_num(f['max'], digits)}"
        lines.append(
            f"| {f['label']} | {_num(f['median'], digits)} | {span} | {f['unit']} | {f['runs']} |"
        )
    return "\n".join(lines)


def _us(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


def render_breakdown(breakdown: Mapping[str, Any], worker_cpu_us: float | None = None) -> str:
    """The per-event cost of each step (Markdown), with what the Kafka clients add.

    ``worker_cpu_us`` is the measured CPU µs per event of one worker process; what the
    in-process steps do not explain of it is shown as the Faust and Kafka-client overhead.
    """
    lines = [
        "| stage | step | µs / input event | µs / call | calls |",
        "|---|---|---:|---:|---:|",
    ]
    steps = breakdown.get("steps", [])
    for step in steps:
        lines.append(
            f"| {step['stage']} | {step['name']} | {_us(step.get('per_event_us'))} | "
            f"{step['per_call_us']:,.1f} | {step['calls']:,} |"
        )
    processing = float(breakdown.get("processing_us_per_event", 0.0))
    lines.append(
        f"| **sum** | ingest + model + drift steps (without the `(all)` rows) | "
        f"**{processing:,.1f}** | | |"
    )
    per_call = {s["name"]: s["per_call_us"] for s in steps if s["stage"] == "kafka"}
    sends = sum((breakdown.get("sends_per_event") or {}).values())
    faust = next((v for k, v in per_call.items() if k.startswith("Faust")), None)
    produce = next((v for k, v in per_call.items() if "produce" in k), None)
    consume = next((v for k, v in per_call.items() if "consume" in k), None)
    if sends and faust is not None:
        lines.append(
            f"| kafka | the pipeline's Faust sends: {sends:.2f} per input event x "
            f"{faust:,.1f} µs | {sends * faust:,.1f} | | |"
        )
    if sends and produce is not None and consume is not None:
        lines.append(
            f"| kafka | the same with confluent-kafka: {sends:.2f} x {produce:,.1f} µs + "
            f"consume {consume:,.1f} µs | {sends * produce + consume:,.1f} | | |"
        )
    if worker_cpu_us is not None:
        lines.append(
            f"| worker | measured CPU per event (1 worker, median) | {worker_cpu_us:,.1f} | | |"
        )
        lines.append(
            f"| worker | **Faust + Kafka clients + rest** (measured - in-process steps) | "
            f"**{max(0.0, worker_cpu_us - processing):,.1f}** | | |"
        )
    return "\n".join(lines)


def render_profile(profile: Mapping[str, Any]) -> str:
    """The py-spy profile grouped by step (Markdown): share of busy samples and µs per event."""
    lines = ["| step (py-spy) | busy samples | share | ≈ µs / event |", "|---|---:|---:|---:|"]
    per_event = profile.get("worker_cpu_us_per_event")
    for row in profile.get("steps", []):
        us = "-" if per_event is None else f"{row['share'] * per_event:,.1f}"
        lines.append(f"| {row['step']} | {row['samples']:,} | {row['share']:.1%} | {us} |")
    return "\n".join(lines)


def _gb(value: Any) -> str:
    return "?" if not isinstance(value, int) else f"{value / 2**30:.1f} GiB"


def report_header(result: Mapping[str, Any], command: str) -> list[str]:
    """Title, command, machine and settings lines of a results.md (``command``: its default)."""
    machine = result.get("machine", {})
    settings = result.get("settings", {})
    versions = machine.get("versions", {})
    out = [f"# {command} — {result.get('started_at', '?')}", ""]
    out.append(f"Command: `{result.get('command', command)}`")
    out.append("")
    out.append(
        f"Machine: {machine.get('cores', '?')} cores ({machine.get('cpu_model', '?')}), "
        f"{_gb(machine.get('ram_bytes'))} RAM, {machine.get('os', '?')}; load average at "
        f"start {machine.get('load_average')}, at end {result.get('load_average_end')}. "
        f"Python {machine.get('python', '?')}, Kafka {settings.get('kafka_version', '?')}, "
        f"faust-streaming {versions.get('faust-streaming')}, river {versions.get('river')}, "
        f"confluent-kafka {versions.get('confluent-kafka')} (librdkafka "
        f"{versions.get('librdkafka')}), aiokafka {versions.get('aiokafka')}."
    )
    out.append("")
    shown = ", ".join(f"{k}={v}" for k, v in settings.items() if k != "kafka_version")
    out.append(f"Settings: {shown}.")
    out.append("")
    return out


def render_markdown(result: Mapping[str, Any]) -> str:
    """The whole report: command, machine, settings, results, checks, breakdown, profile."""
    out = report_header(result, "streamproc bench")
    out.append(render_figures(result.get("figures", [])))
    checks = result.get("checks", [])
    failed = [c for c in checks if not c.get("ok")]
    out.append("")
    if checks:
        out.append(
            f"Accounting: {len(checks) - len(failed)} of {len(checks)} checks passed"
            + (":" if failed else ".")
        )
        for c in failed:
            out.append(f"- {c['what']}: expected {c['expected']:,}, found {c['found']:,}")
        out.append("")
    breakdown = result.get("breakdown")
    if breakdown:
        out += ["## Per-event cost, in process", ""]
        worker = next((f for f in result.get("figures", []) if f["key"] == "worker_cpu_1"), None)
        out.append(render_breakdown(breakdown, worker["median"] if worker else None))
        out.append("")
    profile = result.get("profile")
    if profile:
        out += ["## Worker profile (py-spy)", "", render_profile(profile), ""]
    return "\n".join(out).rstrip() + "\n"


def write_results(
    out_dir: Path,
    result: Mapping[str, Any],
    *,
    json_path: Path | None = None,
    render: Callable[[Mapping[str, Any]], str] = render_markdown,
) -> list[Path]:
    """Write ``results.json`` and ``results.md`` to ``out_dir`` (and the JSON to
    ``json_path`` too); return the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    data = orjson.dumps(result, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS)
    written = [out_dir / "results.json", out_dir / "results.md"]
    written[0].write_bytes(data + b"\n")
    written[1].write_text(render(result), encoding="utf-8")
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_bytes(data + b"\n")
        written.append(json_path)
    return written
