"""Run records: a plain-text log, per-epoch metrics.csv (+ TensorBoard when installed), curves.png."""
from __future__ import annotations

import csv
import math
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Mapping

from utils.atomic import atomic_path


class RunLog:
    """Timestamped messages to stdout and `<work_dir>/log.txt`; silent on non-main processes.

    With `deferred`, file lines are held back until `attach()`: start-up checks log before the
    work dir may be created (or, with --overwrite, emptied).
    """

    def __init__(self, work_dir: str | Path | None, enabled: bool = True, echo: bool = True,
                 deferred: bool = False) -> None:
        self.path = Path(work_dir) / "log.txt" if (work_dir is not None and enabled) else None
        self.enabled = enabled
        self.echo = echo
        self._pending: list[str] | None = [] if deferred else None

    def __call__(self, message: str) -> None:
        """Log one message (several lines allowed)."""
        if not self.enabled:
            return
        text = f"{time.strftime('[%Y-%m-%d %H:%M:%S]')} {message}"
        if self.echo:
            print(text, file=sys.stdout, flush=True)
        self._write(text)

    def record(self, message: str) -> None:
        """Log one message to log.txt only (e.g. a warning already shown on stderr)."""
        if self.enabled:
            self._write(f"{time.strftime('[%Y-%m-%d %H:%M:%S]')} {message}")

    def attach(self) -> None:
        """Start writing log.txt (its folder exists now), beginning with the lines held back."""
        pending, self._pending = self._pending or [], None
        for text in pending:
            self._write(text)

    def _write(self, text: str) -> None:
        if self.path is None:
            return
        if self._pending is not None:
            self._pending.append(text)
            return
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(text + "\n")


def divert_warnings(log: RunLog) -> None:
    """Show every Python warning as usual and also write it to the run's log.txt.

    Callers scope it with `warnings.catch_warnings()`, which restores the previous hook.
    """
    shown = warnings.showwarning

    def show(message: Any, category: type, filename: str, lineno: int, file: Any = None,
             line: str | None = None) -> None:
        shown(message, category, filename, lineno, file, line)
        log.record(f"warning: {message}")

    warnings.showwarning = show


class MetricsLog:
    """One row per epoch in `metrics.csv` (a re-run epoch replaces its row) and TensorBoard scalars."""

    def __init__(self, work_dir: str | Path, tensorboard: bool = True) -> None:
        self.csv_path = Path(work_dir) / "metrics.csv"
        self.png_path = Path(work_dir) / "curves.png"
        self.writer, self.tensorboard_off = (_tensorboard_writer(Path(work_dir) / "tensorboard")
                                             if tensorboard else (None, None))

    def append(self, row: Mapping[str, Any]) -> None:
        """Add (or replace, by epoch) a row; new columns widen the file."""
        rows = [r for r in read_metrics(self.csv_path) if str(r.get("epoch")) != str(row.get("epoch"))]
        rows.append({k: _fmt(v) for k, v in row.items()})
        rows.sort(key=lambda r: float(r.get("epoch", 0)))
        columns: list[str] = []
        for r in rows:
            columns += [k for k in r if k not in columns]
        with atomic_path(self.csv_path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)
        if self.writer is not None:
            step = int(row.get("epoch", 0))
            for key, value in row.items():
                if isinstance(value, (int, float)) and key != "epoch" and math.isfinite(float(value)):
                    self.writer.add_scalar(key, value, step)
            self.writer.flush()

    def plot(self) -> None:
        """Redraw curves.png from metrics.csv."""
        plot_curves(self.csv_path, self.png_path)

    def close(self) -> None:
        """Close the TensorBoard writer."""
        if self.writer is not None:
            self.writer.close()


def _fmt(value: Any) -> Any:
    """Floats to a compact but lossless-enough text."""
    return f"{value:.6g}" if isinstance(value, float) else value


def _tensorboard_writer(log_dir: Path) -> tuple[Any, str | None]:
    """(a SummaryWriter, None) when tensorboard is importable, else (None, why not). It is optional:
    not in requirements.txt, since its wheel brings grpcio, protobuf and a web server along."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:
        return None, f"the tensorboard package is not installed: {exc}"
    except Exception as exc:  # tensorboard's own import errors (e.g. a protobuf mismatch)
        return None, f"tensorboard failed to import: {exc}"
    return SummaryWriter(log_dir=str(log_dir)), None


def read_metrics(path: str | Path) -> list[dict[str, str]]:
    """Rows of a metrics.csv ([] when absent)."""
    path = Path(path)
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _column(rows: list[dict[str, str]], key: str) -> tuple[list[float], list[float]]:
    """(epochs, values) of the rows where `key` has a number."""
    xs, ys = [], []
    for r in rows:
        try:
            x, y = float(r["epoch"]), float(r.get(key) or "nan")
        except (KeyError, ValueError):
            continue
        if math.isfinite(y):
            xs.append(x)
            ys.append(y)
    return xs, ys


def curves_figure(rows: list[dict[str, str]]) -> Any:
    """Two panels, training losses and dev WERs (BiLSTM and temporal stack), against whole epochs;
    each legend sits beside its panel, never over a curve."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, (ax_loss, ax_wer) = plt.subplots(1, 2, figsize=(13, 4))
    for key in rows[0].keys():
        if key.startswith("loss"):
            xs, ys = _column(rows, key)
            if xs:
                ax_loss.plot(xs, ys, marker=".", label=key)
    ax_loss.set_ylabel("training loss")
    ax_loss.set_yscale("symlog")
    for key in [k for k in rows[-1].keys() if k.endswith("wer")]:
        xs, ys = _column(rows, key)
        if xs:
            ax_wer.plot(xs, ys, marker="o", label=key)
    ax_wer.set_ylabel("WER (%)")
    for ax in (ax_loss, ax_wer):
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    fig.tight_layout()
    return fig


def plot_curves(csv_path: str | Path, png_path: str | Path) -> None:
    """curves.png (curves_figure) from metrics.csv, replaced atomically."""
    import matplotlib.pyplot as plt

    rows = read_metrics(csv_path)
    if not rows:
        return
    fig = curves_figure(rows)
    with atomic_path(png_path) as tmp:  # "tight": the legends beside the panels fit
        fig.savefig(tmp, dpi=90, format="png", bbox_inches="tight")
    plt.close(fig)


def progress(iterable: Any = None, **kwargs: Any) -> Any:
    """A tqdm bar that redraws at most every 30 s when stderr is no terminal, so logs stay readable."""
    from tqdm import tqdm

    kwargs.setdefault("mininterval", 0.1 if sys.stderr.isatty() else 30.0)
    return tqdm(iterable, **kwargs)
