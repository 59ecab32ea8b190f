"""The report's figures: matplotlib drawings returned as inline SVG text.

Static SVG, not a JavaScript chart library: the report must open offline, be mailed and kept as a CI
artifact, so it carries no script payload and needs no network. Text stays text (`svg.fonttype`
none: smaller, and the page's font draws it), and a fixed hash salt and no date make the same figure
the same bytes, so a cached re-run's report repeats the reused run's figures exactly.
"""
import io
from typing import Dict, List, Optional, Sequence, Tuple

import matplotlib

matplotlib.use("Agg")  # no display, no GUI toolkit
import matplotlib.pyplot as plt  # noqa: E402  pylint: disable=wrong-import-position
from matplotlib.ticker import MaxNLocator  # noqa: E402  pylint: disable=wrong-import-position

_STYLE = {"svg.fonttype": "none", "svg.hashsalt": "run-report", "font.size": 8,
          "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True,
          "grid.alpha": 0.3, "figure.dpi": 72}
CANDIDATE, BASELINE, EVAL = "#1f6feb", "#8b949e", "#d1242f"


def _svg(figure) -> str:
    buffer = io.StringIO()
    # Fixed margins rather than bbox_inches="tight", which draws every figure twice (half the time).
    figure.savefig(buffer, format="svg", metadata={"Date": None})
    plt.close(figure)
    text = buffer.getvalue()
    return text[text.index("<svg"):]  # drop the XML prolog and DOCTYPE: the SVG sits inside HTML


def _figure(width: float, height: float, left: float = 0.55, bottom: float = 0.45,
            top: float = 0.3):
    """A figure with one axes and margins in inches (room for tick labels and axis titles)."""
    figure, axes = plt.subplots(figsize=(width, height))
    figure.subplots_adjust(left=left / width, bottom=bottom / height, right=1 - 0.15 / width,
                           top=1 - top / height)
    return figure, axes


def histogram(edges: Sequence[float], counts: Sequence[float]) -> str:
    """A numeric column's distribution, from the statistics' histogram buckets."""
    with plt.rc_context(_STYLE):
        figure, axes = _figure(2.6, 1.1, left=0.4, bottom=0.25, top=0.08)
        widths = [high - low for low, high in zip(edges[:-1], edges[1:])]
        axes.bar(edges[:-1], counts, width=widths, align="edge", color=CANDIDATE, linewidth=0)
        axes.tick_params(labelsize=6)
        axes.xaxis.set_major_locator(MaxNLocator(4))
        axes.yaxis.set_major_locator(MaxNLocator(3))
        axes.grid(False)
        return _svg(figure)


def top_values(values: Sequence[Tuple[str, float]]) -> str:
    """A categorical column's most frequent values, horizontal bars (longest first)."""
    with plt.rc_context(_STYLE):
        figure, axes = _figure(2.6, 0.35 + 0.16 * len(values), left=1.3, bottom=0.25, top=0.08)
        labels = [v if len(v) <= 22 else v[:21] + "…" for v, _ in values][::-1]
        axes.barh(range(len(values)), [c for _, c in values][::-1], color=CANDIDATE, height=0.7)
        axes.set_yticks(range(len(values)), labels, fontsize=6)
        axes.tick_params(axis="x", labelsize=6)
        axes.grid(False)
        return _svg(figure)


def curves(history: Dict[str, List[float]], best_epoch: Optional[int]) -> List[Tuple[str, str]]:
    """(metric, SVG) per metric the Trainer recorded: train and eval per epoch, the kept epoch marked."""
    figures = []
    for name in [k for k in history if not k.startswith("val_")]:
        with plt.rc_context(_STYLE):
            figure, axes = _figure(3.4, 2.2)
            epochs = range(1, len(history[name]) + 1)
            axes.plot(epochs, history[name], marker="o", markersize=3, color=CANDIDATE, label="train")
            if f"val_{name}" in history:
                axes.plot(epochs, history[f"val_{name}"], marker="o", markersize=3, color=EVAL,
                          label="eval")
            if best_epoch:
                axes.axvline(best_epoch, color=BASELINE, linestyle="--", linewidth=1,
                             label="kept epoch")
            axes.set_xlabel("epoch")
            axes.xaxis.set_major_locator(MaxNLocator(integer=True))
            axes.set_title(name)
            axes.legend(fontsize=7, frameon=False)
            figures.append((name, _svg(figure)))
    return figures


def _roc_points(matrices: List[dict]) -> tuple:
    def rate(m, hit, miss):
        total = m.get(hit, 0.0) + m.get(miss, 0.0)
        return m.get(hit, 0.0) / total if total else 0.0
    return ([rate(m, "falsePositives", "trueNegatives") for m in matrices],
            [rate(m, "truePositives", "falseNegatives") for m in matrices])


def _pr_points(matrices: List[dict]) -> tuple:
    kept = [m for m in matrices if m.get("truePositives", 0.0) + m.get("falsePositives", 0.0) > 0]
    return [m.get("recall", 0.0) for m in kept], [m.get("precision", 1.0) for m in kept]


def roc_and_pr(matrices: List[dict], baseline: Optional[List[dict]] = None) -> List[Tuple[str, str]]:
    """ROC and precision-recall curves from TFMA's confusion matrices at thresholds (binary), the
    baseline model's in grey when there is one."""
    out = []
    for title, points, axis_labels in (
            ("ROC", _roc_points, ("false positive rate", "true positive rate")),
            ("Precision-recall", _pr_points, ("recall", "precision"))):
        with plt.rc_context(_STYLE):
            figure, axes = _figure(3.0, 2.8)
            if title == "ROC":
                axes.plot([0, 1], [0, 1], color=BASELINE, linestyle=":", linewidth=1)
            if baseline:
                axes.plot(*points(baseline), color=BASELINE, label="baseline")
            axes.plot(*points(matrices), color=CANDIDATE, label="candidate")
            axes.set(xlabel=axis_labels[0], ylabel=axis_labels[1], title=title, xlim=(0, 1),
                     ylim=(0, 1.01))
            if baseline:
                axes.legend(fontsize=7, frameon=False)
            out.append((title, _svg(figure)))
    return out


# TFMA's calibration plot has 10,000 buckets by default, most with an example or none: the figure
# merges them into this many equal-width bins of the prediction.
CALIBRATION_BINS = 10


def _calibration_points(buckets: List[dict]) -> tuple:
    bins = [[0.0, 0.0, 0.0] for _ in range(CALIBRATION_BINS)]  # examples, label sum, prediction sum
    for b in buckets:
        if not b.get("numWeightedExamples"):
            continue
        low = min(max(b.get("lowerThresholdInclusive", 0.0), 0.0), 1.0)
        merged = bins[min(int(low * CALIBRATION_BINS), CALIBRATION_BINS - 1)]
        merged[0] += b["numWeightedExamples"]
        merged[1] += b.get("totalWeightedLabel", 0.0)
        merged[2] += b.get("totalWeightedRefinedPrediction", 0.0)
    kept = [b for b in bins if b[0]]
    return ([p / n for n, _, p in kept], [y / n for n, y, _ in kept],
            [max(6.0, min(120.0, n / 2)) for n, _, _ in kept])


def calibration(buckets: List[dict], baseline: Optional[List[dict]] = None) -> str:
    """Share positive against mean prediction per prediction bucket, from TFMA's calibration plot."""
    with plt.rc_context(_STYLE):
        figure, axes = _figure(3.0, 2.8)
        axes.plot([0, 1], [0, 1], color=BASELINE, linestyle=":", linewidth=1)
        if baseline:
            x, y, sizes = _calibration_points(baseline)
            axes.scatter(x, y, s=sizes, color=BASELINE, alpha=0.5, linewidths=0, label="baseline")
        x, y, sizes = _calibration_points(buckets)
        axes.scatter(x, y, s=sizes, color=CANDIDATE, alpha=0.6, linewidths=0, label="candidate")
        axes.set(xlabel="mean prediction (per bucket)", ylabel="share positive", title="Calibration",
                 xlim=(0, 1), ylim=(0, 1.01))
        if baseline:
            axes.legend(fontsize=7, frameon=False)
        return _svg(figure)


def confusion_matrix(classes: Sequence[str], counts: List[List[float]]) -> str:
    """Actual (rows) by predicted (columns) class counts, from TFMA's multi-class confusion matrix."""
    with plt.rc_context(_STYLE):
        size = 1.2 + 0.45 * len(classes)
        figure, axes = _figure(size + 0.9, size + 0.9, left=1.0, bottom=1.0)
        axes.grid(False)
        axes.imshow(counts, cmap="Blues")
        peak = max((max(row) for row in counts), default=0)
        for i, row in enumerate(counts):
            for j, value in enumerate(row):
                axes.text(j, i, f"{value:.0f}", ha="center", va="center", fontsize=7,
                          color="white" if value > peak / 2 else "black")
        axes.set_xticks(range(len(classes)), classes, rotation=45, ha="right", fontsize=7)
        axes.set_yticks(range(len(classes)), classes, fontsize=7)
        axes.set(xlabel="predicted", ylabel="actual", title="Confusion matrix")
        return _svg(figure)


def predicted_vs_actual_buckets(buckets: List[dict]) -> List[Tuple[str, str]]:
    """Regression on the whole eval split: per prediction bucket (TFMA's calibration histogram),
    mean prediction against mean label, and their difference by size of the prediction.

    `buckets` are dicts with `examples`, `mean_label`, `mean_prediction` (non-empty buckets).
    """
    labels = [b["mean_label"] for b in buckets]
    predictions = [b["mean_prediction"] for b in buckets]
    sizes = [max(6.0, min(120.0, b["examples"] / 2)) for b in buckets]
    low, high = min(labels + predictions), max(labels + predictions)
    with plt.rc_context(_STYLE):
        figure, axes = _figure(3.0, 2.8)
        axes.plot([low, high], [low, high], color=BASELINE, linestyle=":", linewidth=1)
        axes.scatter(labels, predictions, s=sizes, color=CANDIDATE, alpha=0.6, linewidths=0)
        axes.set(xlabel="mean label (actual)", ylabel="mean prediction",
                 title="Predicted vs actual, by prediction")
        scatter = _svg(figure)
        figure, axes = _figure(3.4, 2.8)
        residuals = [p - y for p, y in zip(predictions, labels)]
        axes.axhline(0, color="black", linewidth=0.8)
        axes.vlines(predictions, 0, residuals, colors=[EVAL if r > 0 else CANDIDATE for r in residuals])
        axes.scatter(predictions, residuals, s=sizes, color=[EVAL if r > 0 else CANDIDATE
                                                             for r in residuals], linewidths=0)
        axes.set(xlabel="mean prediction (per bucket)", ylabel="mean prediction − mean label",
                 title="Residual by prediction")
        return [("Predicted vs actual (whole eval split)", scatter),
                ("Residuals (whole eval split)", _svg(figure))]


def predicted_vs_actual(points: List[Tuple[str, float, float, float]]) -> List[Tuple[str, str]]:
    """Regression: mean prediction against mean label, and their difference (the residual), per slice.

    `points` are (slice, mean label, mean prediction, examples) from TFMA's MeanLabel and
    MeanPrediction; TFMA keeps no per-example predictions, so slices are the finest grain it has.
    """
    labels = [p[1] for p in points]
    predictions = [p[2] for p in points]
    sizes = [max(6.0, min(80.0, p[3] / 4)) for p in points]
    low, high = min(labels + predictions), max(labels + predictions)
    with plt.rc_context(_STYLE):
        figure, axes = _figure(3.0, 2.8)
        axes.plot([low, high], [low, high], color=BASELINE, linestyle=":", linewidth=1)
        axes.scatter(labels, predictions, s=sizes, color=CANDIDATE, alpha=0.6, linewidths=0)
        axes.set(xlabel="mean label (actual)", ylabel="mean prediction", title="Predicted vs actual")
        scatter = _svg(figure)
        figure, axes = _figure(4.2, 0.8 + 0.16 * len(points), left=1.6)
        names = [p[0] for p in points][::-1]
        residuals = [p[2] - p[1] for p in points][::-1]
        axes.barh(range(len(points)), residuals,
                  color=[EVAL if r > 0 else CANDIDATE for r in residuals], height=0.7)
        axes.axvline(0, color="black", linewidth=0.8)
        axes.set_yticks(range(len(points)), names, fontsize=6)
        axes.set(xlabel="mean prediction − mean label", title="Residual per slice")
        return [("Predicted vs actual per slice", scatter), ("Residuals per slice", _svg(figure))]
