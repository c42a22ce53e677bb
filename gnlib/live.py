"""Notebook 04's "train now" panel: a live run on the quick preset next to the committed run.

Two layers, so the logic is tested without a browser:

* :class:`TrainNow`: builds the config of a :class:`LiveSetting` (norm; images per device for
  BN; G for GN; epochs) on the quick Figure-1 preset (total batch 32, crop + flip, lr 0.1 with
  cosine decay), trains it with :func:`gnlib.train.train`, finds the committed runs
  of the same setting among the Figure-1 records (same norm, same images per device, same G),
  and draws the live test-error curve next to theirs (:func:`plot_live_vs_committed`);
* :func:`train_now_panel`: the ipywidgets controls, a "Train now" button whose callback runs
  :meth:`TrainNow.run` (progress bar in an ``Output``), the figure as a PNG ``Image`` and the
  numbers as HTML.

Unlike :mod:`gnlib.widgets`, this module trains: it may import :mod:`gnlib.train`.
"""
from __future__ import annotations

import io
from dataclasses import dataclass, replace
from typing import Any

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .experiments import FIGURE1_BATCH, FIGURE1_SLICES, PRESETS
from .paper import NORM_LABELS
from .plots.style import NORM_COLORS, label_axes
from .train import TrainConfig, get_data, train

__all__ = ["GROUP_OPTIONS", "LIVE_NORMS", "LiveSetting", "TrainNow", "plot_live_vs_committed",
           "train_now_panel"]

LIVE_NORMS = ("bn", "gn", "ln", "in")
#: G that divide every layer's channel count of the course's model (64 and 128).
GROUP_OPTIONS = (64, 32, 16, 8, 4, 2, 1)


@dataclass(frozen=True)
class LiveSetting:
    """What the panel's controls choose. ``images``: per device, BN only (others: the whole
    batch); ``groups``: GN only."""

    norm: str = "bn"
    images: int = FIGURE1_BATCH
    groups: int = 32
    epochs: int = 2

    def __post_init__(self) -> None:
        if self.norm not in LIVE_NORMS:
            raise ValueError(f"norm must be one of {LIVE_NORMS}, got {self.norm!r}")
        if self.images not in FIGURE1_SLICES:
            raise ValueError(f"images per device must be one of {FIGURE1_SLICES}, "
                             f"got {self.images}")
        if self.groups not in GROUP_OPTIONS:
            raise ValueError(f"G must be one of {GROUP_OPTIONS}, got {self.groups}")
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 1:
            raise ValueError(f"epochs must be a positive int, got {self.epochs!r}")

    @property
    def canonical(self) -> "LiveSetting":
        """The same run with the settings its norm ignores reset (BN: G; others: images)."""
        return replace(self, images=self.images if self.norm == "bn" else FIGURE1_BATCH,
                       groups=self.groups if self.norm == "gn" else 32)

    @property
    def label(self) -> str:
        s = self.canonical
        if s.norm == "bn":
            return f"BN, statistics over {s.images} image{'s' * (s.images > 1)} per device"
        if s.norm == "gn":
            return f"GN, G = {s.groups}"
        return NORM_LABELS[s.norm]


def _slice(config: dict) -> int:
    return config["batch_size"] // config.get("devices", 1)


class TrainNow:
    """Live runs of the quick Figure-1 preset next to the committed Figure-1 runs.

    ``committed``: Figure-1 records (of one preset) to compare with; ``sizes``: overrides of
    the quick preset's training settings (e.g. ``train_size``, ``test_size``; tests use
    ``dataset="synthetic"``); ``max_epochs``: the epochs control's limit.
    """

    def __init__(self, committed: list[dict], sizes: dict[str, Any] | None = None,
                 max_epochs: int = 4, seed: int = 0):
        self.committed = list(committed)
        self.base = {**PRESETS["quick"]["figure1"]["train"], **(sizes or {})}
        self.max_epochs, self.seed = max_epochs, seed
        self.last: dict | None = None
        self.setting: LiveSetting | None = None
        self._data: dict[tuple, Any] = {}

    def config(self, setting: LiveSetting) -> TrainConfig:
        """The quick-preset config of ``setting``: total batch 32, ``32 // images`` devices."""
        if setting.epochs > self.max_epochs:
            raise ValueError(f"epochs must be at most {self.max_epochs}, got {setting.epochs}")
        s = setting.canonical
        return TrainConfig(**{**self.base, "epochs": s.epochs}, norm=s.norm, groups=s.groups,
                           batch_size=FIGURE1_BATCH, devices=FIGURE1_BATCH // s.images,
                           seed=self.seed)

    def committed_runs(self, setting: LiveSetting) -> list[dict]:
        """The committed records of the same norm, images per device and G, by seed."""
        s = setting.canonical
        return sorted((r for r in self.committed if r["config"]["norm"] == s.norm
                       and _slice(r["config"]) == s.images
                       and (s.norm != "gn" or r["config"]["groups"] == s.groups)),
                      key=lambda r: r["config"]["seed"])

    def run(self, setting: LiveSetting, progress: bool = False) -> dict:
        """Train ``setting`` now (seconds); returns the record and keeps it for the figure."""
        cfg = self.config(setting)
        key = (cfg.dataset, cfg.train_size, cfg.test_size)
        if key not in self._data:
            self._data[key] = get_data(cfg)
        self.last = train(cfg, self._data[key], progress=progress)
        self.setting = setting.canonical
        return self.last

    def figure(self, setting: LiveSetting | None = None) -> Figure:
        """The committed runs of ``setting`` (default: the last run's) and, if the last live
        run is of that setting, its curve next to them."""
        setting = (setting or self.setting or LiveSetting()).canonical
        live = self.last if self.setting == setting else None
        return plot_live_vs_committed(live, self.committed_runs(setting), setting.label)

    def summary(self, setting: LiveSetting | None = None) -> str:
        """Plain-text numbers: the last live run (if it is of ``setting``) and the committed
        runs of ``setting`` (default: the last run's)."""
        setting = (setting or self.setting)
        if setting is None:
            return "no live run yet: choose a setting and press Train now"
        setting = setting.canonical
        lines = [f"setting: {setting.label}"]
        if self.last is not None and self.setting == setting:
            c, r = self.last["config"], self.last
            flag = " (did not train: left out of means)" if r["did_not_train"] else ""
            lines.append(f"live run (quick preset, {c['train_size']:,} training images, "
                         f"{c['epochs']} epoch{'s' * (c['epochs'] > 1)}, {r['steps']} steps): "
                         f"test error {r['test_error']:.2f} %{flag}")
        else:
            lines.append("live run: press Train now")
        runs = self.committed_runs(setting)
        if not runs:
            lines.append("committed: no committed run for this setting")
        else:
            c, preset = runs[0]["config"], runs[0].get("preset", "full")
            errs = ", ".join(f"{r['test_error']:.2f}" for r in runs)
            seeds = ", ".join(str(r["config"]["seed"]) for r in runs)
            lines.append(f"committed ({preset} preset, {c['train_size']:,} training images, "
                         f"{c['epochs']} epochs): test error {errs} % "
                         f"(seed{'s' * (len(runs) > 1)} {seeds})")
        return "\n".join(lines)


def plot_live_vs_committed(live: dict | None, committed: list[dict], label: str) -> Figure:
    """Two panels sharing the error axis: the live run's test error per epoch (left; a note
    when there is none yet) and the committed runs' (right; one thin line per seed, their mean
    thick), or a note that there is no committed run for this setting."""
    fig = Figure(figsize=(10, 3.6), dpi=80)
    left, right = fig.subplots(1, 2, sharey=True)

    def note(ax, text: str) -> None:
        ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=11,
                color="grey")

    if live is not None:
        h, c = live["history"], live["config"]
        left.plot(h["epoch"], h["test_error"], "o-", color=NORM_COLORS[c["norm"]],
                  label="test error (eval mode)")
        label_axes(left, "epoch", "test error (%)", f"live run now: {c['train_size']:,} "
                   f"training images, {c['epochs']} epoch{'s' * (c['epochs'] > 1)}, "
                   f"{live['wall_s']:.0f} s", legend=dict(fontsize=8))
    else:
        note(left, "press Train now")
        label_axes(left, "epoch", "test error (%)", "live run now")
    if committed:
        color = NORM_COLORS[committed[0]["config"]["norm"]]
        curves = [r["history"]["test_error"] for r in committed]
        for r, errs in zip(committed, curves):
            right.plot(r["history"]["epoch"], errs, "-" if len(curves) > 1 else "o-",
                       color=color, alpha=0.35 if len(curves) > 1 else 1, lw=1,
                       label=f"seed {r['config']['seed']}")
        if len(curves) > 1:
            n = min(len(e) for e in curves)
            mean = [sum(e[i] for e in curves) / len(curves) for i in range(n)]
            right.plot(committed[0]["history"]["epoch"][:n], mean, "o-", color=color,
                       label=f"mean of {len(curves)} seeds")
        cc = committed[0]["config"]
        label_axes(right, "epoch", None, f"committed: {cc['train_size']:,} training images, "
                   f"{cc['epochs']} epochs", legend=dict(fontsize=8))
    else:
        note(right, "no committed run for this setting")
        label_axes(right, "epoch", None, "committed run")
    right.tick_params(labelleft=True)
    for ax in (left, right):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if live is None and not committed:
        left.set_ylim(0, 100)
    fig.suptitle(f"{label}: a live run on the quick preset next to the committed full-preset "
                 "runs (total batch 32 per step)", fontsize=10)
    fig.tight_layout()
    return fig


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi="figure")
    return buf.getvalue()


def _pre(text: str) -> str:
    return f"<pre style='font-size: 12px; line-height: 1.3'>{text}</pre>"


def train_now_panel(trainer: TrainNow, setting: LiveSetting | None = None) -> Any:
    """The ipywidgets panel around ``trainer``: norm, images per device (BN), G (GN), epochs,
    a "Train now" button, a progress area, the figure and the numbers. ``box.controls``,
    ``box.trainer`` and ``box.start`` (the button's callback) give access for tests."""
    import ipywidgets as w

    s = (setting or LiveSetting(epochs=min(2, trainer.max_epochs))).canonical
    wide = dict(style={"description_width": "130px"}, layout=w.Layout(width="380px"))
    c = {
        "norm": w.ToggleButtons(options=[(n.upper(), n) for n in LIVE_NORMS], value=s.norm,
                                description="norm"),
        "images": w.SelectionSlider(options=list(FIGURE1_SLICES), value=s.images,
                                    description="images per device", continuous_update=False,
                                    **wide),
        "groups": w.SelectionSlider(options=list(GROUP_OPTIONS), value=s.groups,
                                    description="G (groups)", continuous_update=False, **wide),
        "epochs": w.IntSlider(value=s.epochs, min=1, max=trainer.max_epochs,
                              description="epochs", continuous_update=False, **wide),
        "train": w.Button(description="Train now", button_style="primary", icon="play"),
    }
    out = w.Output()
    image = w.Image(value=_png(trainer.figure(s)), format="png")
    numbers = w.HTML(value=_pre(trainer.summary(s)))

    def current() -> LiveSetting:
        return LiveSetting(c["norm"].value, c["images"].value, c["groups"].value,
                           c["epochs"].value)

    shown = {"setting": s}

    def on_change(_: Any = None) -> None:
        c["images"].disabled = c["norm"].value != "bn"
        c["groups"].disabled = c["norm"].value != "gn"
        chosen = current().canonical
        if chosen != shown["setting"]:          # e.g. G moved while BN is chosen: no redraw
            shown["setting"] = chosen
            image.value = _png(trainer.figure(chosen))
        numbers.value = _pre(trainer.summary(chosen))

    def start(_: Any = None) -> dict | None:
        chosen = current().canonical
        c["train"].disabled, c["train"].description = True, "training ..."
        record = None
        try:
            with out:                           # the progress bar, or the error, shows here
                out.clear_output(wait=True)
                record = trainer.run(chosen, progress=True)
        finally:
            c["train"].disabled, c["train"].description = False, "Train now"
        if record is not None:
            shown["setting"] = chosen
            image.value = _png(trainer.figure(chosen))
            numbers.value = _pre(trainer.summary(chosen))
        return record

    for name in ("norm", "images", "groups", "epochs"):
        c[name].observe(on_change, names="value")
    c["train"].on_click(start)
    c["images"].disabled = s.norm != "bn"
    c["groups"].disabled = s.norm != "gn"
    box = w.VBox([c["norm"], w.HBox([w.VBox([c["images"], c["groups"], c["epochs"]]),
                                     c["train"]]), out, image, numbers])
    box.controls, box.trainer, box.start = c, trainer, start
    return box
