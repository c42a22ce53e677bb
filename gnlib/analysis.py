r"""Tables, seed-paired statistics and verdict sentences from results records (pandas, no torch).

Runs with the same seed share the initialization, the data order and the augmentation, so two
configurations that differ only in the normalization are compared **seed by seed**: with
:math:`d_k = e_A(k) - e_B(k)` over the :math:`n` seeds both finished,

.. math::

    \bar d \pm \mathrm{SE},\quad \mathrm{SE} = \frac{s_d}{\sqrt n},\qquad
    t = \frac{\bar d}{\mathrm{SE}}\ \text{with}\ n - 1\ \text{degrees of freedom}

(:func:`paired_difference`); a verdict says "worse" / "better" only when the two-sided
:math:`p < 0.05` (with 3 seeds that needs :math:`|t| > 4.30`). Runs that diverged or did not
train (:func:`gnlib.results.did_not_train`) are left out of every mean and counted.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from .paper import METHOD_FACTS, NORM_LABELS

__all__ = ["Paired", "bn_drift_frame", "condition_order", "condition_table", "describe_conditions",
           "describe_figure1", "describe_paired", "describe_small_batch", "figure1_table",
           "history_frame", "last_epoch_change", "mean_se", "method_summary", "non_iid_label",
           "non_iid_order", "paired_difference", "runs_frame", "summary_table"]

ALPHA = 0.05


# ---- names of batch conditions ------------------------------------------------------------
def non_iid_label(c: dict) -> str:
    """A readable name of a config's batch condition, e.g. ``"16 devices x 2, 1 class each"``."""
    b, d, bt = c["batch_size"], c.get("devices", 1), c.get("batching", "shuffled")
    what = {"shuffled": "i.i.d.", "non-iid-1": "1 class each", "non-iid-2": "2 classes each"}[bt]
    if d == 1:
        return "shuffled" if bt == "shuffled" else f"{bt[-1]} class{'es' if bt[-1] == '2' else ''} per batch"
    return f"{d} devices x {b // d}" + (f", {what}" if b // d > 1 or bt != "shuffled" else "")


def non_iid_order(c: dict) -> tuple[int, int]:
    """Sort key of the conditions: shuffled, whole-batch non-i.i.d., i.i.d. devices (fewer
    images per device last), non-i.i.d. devices."""
    d, bt = c.get("devices", 1), c.get("batching", "shuffled")
    return ((0 if bt == "shuffled" else 1) if d == 1 else (2 if bt == "shuffled" else 3), d)


def condition_order(records: list[dict]) -> list[str]:
    """The condition labels present in ``records``, in the order of :func:`non_iid_order`."""
    configs = sorted((r["config"] for r in records), key=non_iid_order)
    return list(dict.fromkeys(non_iid_label(c) for c in configs))


# ---- frames ----------------------------------------------------------------------------------
RUN_COLUMNS = ["norm", "groups", "condition", "channels_per_group", "batch_size", "slice", "seed",
               "epochs", "batching", "devices", "test_error", "train_error",
               "test_error_train_mode", "test_error_precise_bn", "diverged", "did_not_train",
               "usable", "wall_s"]


def runs_frame(records: list[dict]):
    """One row per run: config columns, ``slice`` (images per device), the final metrics, and
    ``usable`` (neither diverged nor did-not-train)."""
    import pandas as pd

    rows = []
    for r in records:
        c = r["config"]
        rows.append({"norm": c["norm"], "groups": c["groups"], "condition": non_iid_label(c),
                     "channels_per_group": c["channels_per_group"], "batch_size": c["batch_size"],
                     "slice": c["batch_size"] // c.get("devices", 1), "seed": c["seed"],
                     "epochs": c["epochs"], "batching": c.get("batching", "shuffled"),
                     "devices": c.get("devices", 1), "test_error": r["test_error"],
                     "train_error": r["train_error"],
                     "test_error_train_mode": r.get("test_error_train_mode"),
                     "test_error_precise_bn": r.get("test_error_precise_bn"),
                     "diverged": bool(r["diverged"]), "did_not_train": bool(r.get("did_not_train")),
                     "wall_s": r.get("wall_s")})
    df = pd.DataFrame(rows, columns=RUN_COLUMNS)
    df["usable"] = ~(df["diverged"] | df["did_not_train"])
    floats = ("test_error", "train_error", "test_error_train_mode", "test_error_precise_bn")
    return df.astype({k: float for k in floats})


def history_frame(records: list[dict]):
    """Long table of the per-epoch histories: norm, batch_size, devices, seed, condition,
    epoch, split (``"train"`` / ``"test"``), error, and whether the run is ``usable``."""
    import pandas as pd

    rows = []
    for r in records:
        c, h = r["config"], r["history"]
        ok = not r["diverged"] and not r.get("did_not_train")
        for i, ep in enumerate(h["epoch"]):
            for split in ("train", "test"):
                err = h[f"{split}_error"][i]
                if err is not None:
                    rows.append({"norm": c["norm"], "groups": c["groups"],
                                 "channels_per_group": c["channels_per_group"],
                                 "batch_size": c["batch_size"], "devices": c.get("devices", 1),
                                 "seed": c["seed"], "condition": non_iid_label(c), "epoch": ep,
                                 "split": split, "error": err, "usable": ok})
    return pd.DataFrame(rows)


def bn_drift_frame(records: list[dict]):
    """Long table of BN's per-epoch running-statistics gap per run: norm, condition, seed,
    epoch, var_ratio, mean_gap (runs without it are skipped)."""
    import pandas as pd

    rows = [{"norm": r["config"]["norm"], "condition": non_iid_label(r["config"]),
             "seed": r["config"]["seed"], "epoch": e, "var_ratio": vr, "mean_gap": mg}
            for r in records if "bn_var_ratio" in r["history"]
            for e, vr, mg in zip(r["history"]["epoch"], r["history"]["bn_var_ratio"],
                                 r["history"]["bn_mean_gap"]) if vr is not None]
    return pd.DataFrame(rows, columns=["norm", "condition", "seed", "epoch", "var_ratio", "mean_gap"])


# ---- statistics ------------------------------------------------------------------------------
def mean_se(values) -> tuple[float, float, int]:
    """Mean, standard error of the mean (NaN for one value) and count of the non-NaN values."""
    v = [float(x) for x in values if x == x]
    n = len(v)
    if n == 0:
        return math.nan, math.nan, 0
    m = sum(v) / n
    sd = math.sqrt(sum((x - m) ** 2 for x in v) / (n - 1)) if n > 1 else math.nan
    return m, sd / math.sqrt(n) if n > 1 else math.nan, n


@dataclass(frozen=True)
class Paired:
    """A seed-paired difference A - B: mean, standard error, t, df = n - 1, two-sided p."""

    mean: float
    se: float
    t: float
    df: int
    p: float
    n: int

    @property
    def significant(self) -> bool:
        return self.n > 1 and self.p < ALPHA

    def verdict(self, worse: str = "worse", better: str = "better") -> str:
        """``worse`` / ``better`` when significant at 5 %, else what the test says."""
        if self.n < 2:
            return "one seed pair only, no test"
        if not self.significant:
            return f"no significant difference (p = {self.p:.2f})"
        return f"{worse if self.mean > 0 else better} (p = {self.p:.3f})"

    def __str__(self) -> str:
        se = f" ± {self.se:.2f}" if self.se == self.se else ""
        return f"{self.mean:+.2f}{se} (n = {self.n})"


def paired_difference(df, a: Callable, b: Callable, value: str = "test_error") -> Paired:
    """Seed-paired ``value`` of the usable runs selected by ``a(df)`` minus those of ``b(df)``
    (boolean masks); seeds present in both only."""
    from scipy import stats

    d = df[df["usable"]]
    ea = d[a(d)].groupby("seed")[value].mean()
    eb = d[b(d)].groupby("seed")[value].mean()
    diff = (ea - eb).dropna()
    m, se, n = mean_se(diff.tolist())
    if n < 2 or not se > 0:
        return Paired(m, se, math.nan, max(n - 1, 0), math.nan, n)
    t = m / se
    return Paired(m, se, t, n - 1, float(2 * stats.t.sf(abs(t), n - 1)), n)


def describe_paired(name_a: str, name_b: str, p: Paired) -> str:
    """One sentence: ``"A - B: +0.70 ± 0.10 (n = 3): worse (p = 0.020)"``."""
    return f"{name_a} - {name_b}: {p}: {p.verdict()}"


# ---- tables ----------------------------------------------------------------------------------
def summary_table(records: list[dict], by: tuple[str, ...] = ("norm", "batch_size"),
                  value: str = "test_error"):
    """Mean, standard error and number of usable seeds of ``value`` per group, and how many
    runs were left out (diverged or did not train)."""
    import pandas as pd

    df = runs_frame(records)
    rows = []
    for key, g in df.groupby(list(by)):
        m, se, n = mean_se(g[g["usable"]][value].tolist())
        rows.append((*(key if isinstance(key, tuple) else (key,)), m, se, n,
                     int((~g["usable"]).sum())))
    out = pd.DataFrame(rows, columns=[*by, "mean", "se", "count", "left_out"])
    return out.set_index(list(by)).round(2)


def figure1_table(records: list[dict]):
    """The paired table of Figure 1: per condition (BN at each slice size, then GN, LN, IN) the
    mean ± SE test error over usable seeds, runs left out, BN's PreciseBN and train-mode errors,
    and seed-paired differences against BN at 32 images and against GN."""
    import pandas as pd

    df = runs_frame(records)
    top = int(df["slice"].max()) if len(df) else 32
    bn32 = lambda d: (d["norm"] == "bn") & (d["slice"] == top)  # noqa: E731
    gn = lambda d: d["norm"] == "gn"  # noqa: E731
    conds = [("bn", s) for s in sorted(df[df["norm"] == "bn"]["slice"].unique(), reverse=True)]
    conds += [(n, top) for n in ("gn", "ln", "in") if n in set(df["norm"])]
    rows = []
    for norm, s in conds:
        sel = lambda d, n=norm, s=s: (d["norm"] == n) & (d["slice"] == s)  # noqa: E731
        g = df[sel(df)]
        m, se, n = mean_se(g[g["usable"]]["test_error"].tolist())
        row = {"norm": norm, "images per device": s, "test error %": m, "SE": se, "seeds": n,
               "left out": int((~g["usable"]).sum()),
               "PreciseBN %": mean_se(g[g["usable"]]["test_error_precise_bn"].tolist())[0],
               "train-mode %": mean_se(g[g["usable"]]["test_error_train_mode"].tolist())[0]}
        row["vs BN at %d" % top] = paired_difference(df, sel, bn32) if norm != "bn" or s != top else None
        row["vs GN"] = paired_difference(df, sel, gn) if norm != "gn" else None
        rows.append(row)
    return pd.DataFrame(rows)


def condition_table(records: list[dict]):
    """Mean and SE over usable seeds of the eval-mode and train-mode test error per batch
    condition (:func:`non_iid_label`) and norm, in the order of :func:`non_iid_order`."""
    df = runs_frame(records)
    df = df[df["usable"]]
    t = df.groupby(["condition", "norm"])[["test_error", "test_error_train_mode"]].agg(
        ["mean", "sem", "count"])
    t.columns = [f"{a}_{b}" for a, b in t.columns]
    return t.reindex(condition_order(records), level="condition").round(2)


def describe_conditions(records: list[dict]) -> list[str]:
    """One sentence per batch condition of the ``non-iid`` experiment: BN's, SyncBN's and GN's
    test error and their seed-paired difference from the shuffled run of the same norm (BN's
    for SyncBN), with BN's train-mode error; runs left out are counted."""
    df = runs_frame(records)
    out = []
    for cond in condition_order(records):
        parts = []
        for norm, ref in (("bn", "bn"), ("syncbn", "bn"), ("gn", "gn")):
            here = lambda d, n=norm, c=cond: (d["norm"] == n) & (d["condition"] == c)  # noqa: E731
            g = df[here(df)]
            if not len(g):
                continue
            m, _, n = mean_se(g[g["usable"]]["test_error"].tolist())
            name = NORM_LABELS[norm] if norm == "syncbn" else norm.upper()
            left = int((~g["usable"]).sum())
            txt = f"{name} {m:.2f} % ({n} seed{'s' * (n != 1)}" + (
                f"; {left} did not train, left out)" if left else ")")
            if cond != "shuffled":
                base = lambda d, r=ref: (d["norm"] == r) & (d["condition"] == "shuffled")  # noqa: E731
                p = paired_difference(df, here, base)
                txt += f", minus shuffled {ref.upper()}: {p}, {p.verdict()}"
            if norm == "bn":
                txt += f", train-mode statistics {mean_se(g[g['usable']]['test_error_train_mode'])[0]:.2f} %"
            parts.append(txt)
        out.append(f"{cond}: " + "; ".join(parts))
    return out


def describe_small_batch(records: list[dict], reference: str = "bn") -> list[str]:
    """One sentence per (batch size, norm) of the ``small-batch`` experiment: the seed-paired
    difference from ``reference`` at the same batch size."""
    df = runs_frame(records)
    out = []
    for b in sorted(df["batch_size"].unique(), reverse=True):
        ref = lambda d, b=b: (d["norm"] == reference) & (d["batch_size"] == b)  # noqa: E731
        for n in [n for n in ("br", "gn", "gn+ws") if n != reference]:
            sel = lambda d, n=n, b=b: (d["norm"] == n) & (d["batch_size"] == b)  # noqa: E731
            if not df[sel(df) & df["usable"]].shape[0]:
                out.append(f"batch {b}: {n.upper()}: no finished runs")
                continue
            m = mean_se(df[sel(df) & df["usable"]]["test_error"])[0]
            p = paired_difference(df, sel, ref)
            out.append(f"batch {b}: {n.upper():5s} {m:.2f} %, minus {reference.upper()}: {p}: "
                       f"{p.verdict()}")
    return out


def method_summary(small_batch: list[dict], non_iid: list[dict], batch_size: int = 2):
    """The summary table of notebook 07: per method the facts of :data:`METHOD_FACTS` and its
    measured test error (mean ± SE over usable seeds): with one batch of ``batch_size``, and at
    batch 32 on 16 simulated devices of 2 images, i.i.d. or of one class each."""
    import pandas as pd

    def fmt(errs) -> str:
        m, se, n = mean_se(errs)
        return "not run" if n == 0 else (f"{m:.2f}" if n == 1 else f"{m:.2f} ± {se:.2f}")

    sb, ni = runs_frame(small_batch), runs_frame(non_iid)
    sb, ni = sb[sb["usable"] & (sb["batch_size"] == batch_size)], ni[ni["usable"]]

    def cond(norm: str, label: str) -> list:
        return ni[(ni["norm"] == norm) & (ni["condition"] == label)]["test_error"].tolist()

    rows = []
    for m, (indep, same, comm) in METHOD_FACTS.items():
        iid = {"syncbn": cond("bn", "shuffled"), "gn": cond("gn", "shuffled")}.get(
            m, cond(m, "16 devices x 2, i.i.d."))
        rows.append({"method": NORM_LABELS[m], "batch-independent": indep,
                     "training = inference": same, "communication for statistics": comm,
                     f"batch {batch_size}": (fmt(sb[sb["norm"] == m]["test_error"].tolist())
                                             if m != "syncbn" else "n/a (one device)"),
                     "16 devices x 2, i.i.d.": fmt(iid),
                     "16 devices x 2, 1 class each": fmt(cond(m, "16 devices x 2, 1 class each"))})
    return pd.DataFrame(rows).set_index("method")


def last_epoch_change(records: list[dict]):
    """Per norm and slice size, over usable seeds: the final test error and how much the last
    epoch changed it (the convergence check of a run whose lr ends at 0)."""
    import pandas as pd

    rows = []
    for r in records:
        if r["diverged"] or r.get("did_not_train") or len(r["history"]["test_error"]) < 2:
            continue
        c, e = r["config"], r["history"]["test_error"]
        rows.append({"norm": c["norm"], "slice": c["batch_size"] // c.get("devices", 1),
                     "seed": c["seed"], "final": e[-1], "last_epoch_change": e[-1] - e[-2]})
    df = pd.DataFrame(rows, columns=["norm", "slice", "seed", "final", "last_epoch_change"])
    return df.groupby(["norm", "slice"])[["final", "last_epoch_change"]].mean()


def describe_figure1(table) -> list[str]:
    """Sentences from :func:`figure1_table`: each condition against BN with all images and
    against GN, seed-paired; a verdict only where the t-test says so (p < 0.05)."""
    out = []
    top = int(table["images per device"].max())
    for _, row in table.iterrows():
        who = (f"BN over {row['images per device']} image{'s' * (row['images per device'] > 1)}"
               if row["norm"] == "bn" else NORM_LABELS[row["norm"]])
        parts = [f"{who}: {row['test error %']:.2f} %"]
        for col, name in ((f"vs BN at {top}", f"BN over {top}"), ("vs GN", "GN")):
            p = row[col]
            if isinstance(p, Paired):
                parts.append(f"minus {name} {p}: {p.verdict()}")
        out.append("; ".join(parts))
    return out
