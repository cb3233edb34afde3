"""Reports: a JSON file, a markdown table and matplotlib plots from a list of evaluations."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from .evaluate import VideoEvaluation

# (metric path, column header, format). Arrows: ↑ higher is better, ↓ lower is better.
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("reference.m_lmd", "M-LMD ↓", "{:.2f}"),
    ("reference.f_lmd", "F-LMD ↓", "{:.2f}"),
    ("reference.psnr", "PSNR ↑", "{:.2f}"),
    ("reference.ssim", "SSIM ↑", "{:.3f}"),
    ("lipsync.closure_lift", "closure lift ↑", "{:.2f}"),
    ("lipsync.vowel_bilabial_auc", "vowel/bilabial AUC ↑", "{:.2f}"),
    ("lipsync.lag_correlation", "A–V corr ↑", "{:.2f}"),
    ("lipsync.lag_frames", "lag (frames)", "{:+.1f}"),
    ("identity.csim_mean", "ID cos* ↑", "{:.3f}"),
    ("identity.csim_min", "ID cos min* ↑", "{:.3f}"),
    ("identity.same_identity_rate", "same-ID rate* ↑", "{:.2f}"),
    ("emotion.correct", "emotion acc* ↑", "{:.2f}"),
    ("motion.blinks_per_minute", "blinks/min", "{:.1f}"),
    ("motion.rotation_speed_deg_s", "head speed (°/s)", "{:.1f}"),
    ("motion.jitter_pct_iod", "jitter (% IOD) ↓", "{:.2f}"),
    ("sharpness.mouth_laplacian_var", "mouth sharpness ↑", "{:.0f}"),
    ("sharpness.cpbd", "CPBD ↑", "{:.3f}"),
)
TABLE_NOTE = (
    "\\* stand-ins: ID cos = cosine of dlib face embeddings (not ArcFace CSIM; different people still score "
    "0.80–0.92), same-ID rate = frames within dlib's 0.6 same-person distance; emotion acc = geometric "
    "nearest-prototype classifier calibrated on two MEAD actors (not Emotion-FAN); lip-sync columns are "
    "SyncNet-free proxies (pocketsphinx phones + face-mesh lip aperture). LMD in pixels at 256 px; lag < 0 = "
    "mouth ahead of the sound."
)


def to_jsonable(value):
    """Plain-JSON copy of nested metrics: numpy scalars/arrays to Python, NaN to null, ±inf to "inf"/"-inf"."""
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer, int)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        value = float(value)
        if math.isnan(value):
            return None
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return value
    return value


def flatten(metrics: Mapping, prefix: str = "") -> dict[str, float]:
    """Numeric leaves of nested metrics as ``{"group.name": value}`` (booleans and strings left out)."""
    out: dict[str, float] = {}
    for key, value in metrics.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, path + "."))
        elif isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_)):
            out[path] = float(value)
    return out


def aggregate(evaluations: Sequence[VideoEvaluation | Mapping]) -> dict[str, float]:
    """Mean of every numeric metric over the evaluations (NaN ignored; ``inf`` if every value is ``inf``)."""
    flat = [flatten(e.metrics if isinstance(e, VideoEvaluation) else e) for e in evaluations]
    keys = sorted({k for f in flat for k in f})
    out = {}
    for key in keys:
        values = np.array([f[key] for f in flat if key in f], dtype=np.float64)
        finite = values[np.isfinite(values)]
        if finite.size:
            out[key] = float(finite.mean())
        elif np.isinf(values).any():
            out[key] = float(values[np.isinf(values)][0])
        else:
            out[key] = float("nan")
        out[key + ".n"] = float(np.isfinite(values).sum() + np.isinf(values).sum())
    return out


def _format(value: float | None, fmt: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float) and math.isinf(value):
        return "∞" if value > 0 else "-∞"
    return fmt.format(value)


def markdown_table(
    rows: Sequence[tuple[str, Mapping[str, float]]],
    columns: Sequence[tuple[str, str, str]] = COLUMNS,
    drop_empty: bool = True,
    first_header: str = "",
) -> str:
    """A markdown table: one row per ``(label, flat metrics)``; columns empty in every row are dropped."""
    if drop_empty:
        columns = [c for c in columns if any(_present(r.get(c[0])) for _, r in rows)]
    lines = [
        "| " + " | ".join([first_header] + [c[1] for c in columns]) + " |",
        "| " + " | ".join(["---"] + ["---:"] * len(columns)) + " |",
    ]
    for label, values in rows:
        lines.append("| " + " | ".join([label] + [_format(values.get(c[0]), c[2]) for c in columns]) + " |")
    return "\n".join(lines) + "\n"


def _present(value) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def plot_lipsync(evaluation: VideoEvaluation, path: str | Path, seconds: float = 10.0) -> Path | None:
    """Aperture vs audio envelope with /p b m/ (red) and open-vowel (green) spans, and the lag curve."""
    signals = evaluation.signals
    if "aperture" not in signals:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from emotalk_common.alignment import BILABIALS, OPEN_VOWELS

    fps = signals["fps"]
    aperture, envelope = np.asarray(signals["aperture"]), np.asarray(signals["envelope"])
    count = min(len(aperture), int(seconds * fps))
    t = np.arange(count) / fps
    figure, (top, right) = plt.subplots(1, 2, figsize=(13, 3.2), gridspec_kw={"width_ratios": [4, 1]})

    def unit(x):
        x = np.asarray(x, dtype=np.float64)
        low, high = np.nanmin(x), np.nanmax(x)
        return (x - low) / (high - low) if high > low else x * 0

    top.plot(t, unit(aperture[:count]), label="lip aperture", lw=1.2)
    top.plot(t, unit(envelope[:count]), label="audio envelope", lw=1.0, alpha=0.7)
    for phone, start, end in signals.get("phones", []):
        if count == 0 or start > t[-1]:
            break
        if phone in BILABIALS:
            top.axvspan(start, end, color="tab:red", alpha=0.25, lw=0)
        elif phone in OPEN_VOWELS:
            top.axvspan(start, end, color="tab:green", alpha=0.15, lw=0)
    top.set_xlabel("seconds")
    top.set_title(f"{evaluation.name}: aperture vs envelope (red /p b m/, green open vowels)", fontsize=9)
    top.legend(loc="upper right", fontsize=8)
    curve = np.asarray(signals["lag_curve"])
    right.plot(curve[:, 0], curve[:, 1], marker="o")
    right.axvline(0, color="grey", lw=0.5)
    right.set_xlabel("lag (frames, < 0: mouth ahead)")
    right.set_title("audio–aperture correlation", fontsize=9)
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, dpi=80)
    plt.close(figure)
    return path


def plot_summary(rows: Sequence[tuple[str, Mapping[str, float]]], path: str | Path, keys=None) -> Path:
    """Bar charts of the main metrics, one bar per row (e.g. per benchmark condition)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = keys or [
        ("lipsync.closure_lift", "closure lift"),
        ("lipsync.vowel_bilabial_auc", "vowel/bilabial AUC"),
        ("lipsync.lag_correlation", "A–V correlation"),
        ("identity.csim_mean", "identity cosine*"),
        ("reference.m_lmd", "M-LMD"),
        ("motion.jitter_pct_iod", "jitter % IOD"),
    ]
    keys = [k for k in keys if any(_present(r.get(k[0])) and np.isfinite(r.get(k[0])) for _, r in rows)]
    figure, axes = plt.subplots(1, max(1, len(keys)), figsize=(3.2 * max(1, len(keys)), 3.4), squeeze=False)
    labels = [label for label, _ in rows]
    for axis, (key, title) in zip(axes[0], keys, strict=True):
        values = [r.get(key, float("nan")) for _, r in rows]
        values = [v if v is not None and np.isfinite(v) else 0.0 for v in values]
        axis.bar(range(len(values)), values, color=plt.cm.tab10(np.arange(len(values)) % 10))
        axis.set_xticks(range(len(values)), labels, rotation=35, ha="right", fontsize=7)
        axis.set_title(title, fontsize=9)
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, dpi=80)
    plt.close(figure)
    return path


def write_report(
    evaluations: Sequence[VideoEvaluation],
    output_dir: str | Path,
    plots: bool = True,
    title: str = "EmoTalk evaluation",
    groups: Mapping[str, Sequence[VideoEvaluation]] | None = None,
    extra: Mapping | None = None,
) -> dict[str, Path]:
    """Write ``results.json``, ``results.md`` and (optionally) ``plots/*.png``; return their paths.

    ``groups`` (label → evaluations) adds a summary table with one mean row per group, e.g. per benchmark
    condition; without it the summary has one row per video plus their mean.
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    if groups:
        summary_rows = [(label, aggregate(items)) for label, items in groups.items() if items]
    else:
        summary_rows = [(e.name, flatten(e.metrics)) for e in evaluations]
        if len(evaluations) > 1:
            summary_rows.append(("**mean**", aggregate(evaluations)))
    per_video_rows = [(e.name, flatten(e.metrics)) for e in evaluations]
    markdown = [f"# {title}\n", markdown_table(summary_rows), "", TABLE_NOTE, ""]
    if groups:
        markdown += ["## Per video\n", markdown_table(per_video_rows), ""]
    paths = {"markdown": output_dir / "results.md", "json": output_dir / "results.json"}
    document = {
        "title": title,
        "summary": {label: values for label, values in summary_rows},
        "videos": [e.metrics for e in evaluations],
        **(dict(extra) if extra else {}),
    }
    paths["json"].write_text(json.dumps(to_jsonable(document), indent=1, allow_nan=False) + "\n")
    if plots:
        plot_dir = output_dir / "plots"
        plot_dir.mkdir(exist_ok=True)
        paths["summary_plot"] = plot_summary(summary_rows, plot_dir / "summary.png")
        for index, evaluation in enumerate(evaluations):
            safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in evaluation.name)[:80]
            made = plot_lipsync(evaluation, plot_dir / f"lipsync_{index:03d}_{safe}.png")
            if made is not None:
                paths[f"lipsync_{index}"] = made
        markdown += ["## Plots\n", "![summary](plots/summary.png)", ""]
    paths["markdown"].write_text("\n".join(markdown))
    return paths
