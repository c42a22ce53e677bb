r"""Was the schedule long enough? The last epoch's change, and the same seeds at two budgets.

A run whose learning rate ends at 0 reports its final epoch's test error. Two checks of
whether that number is an end point rather than a snapshot:

* :func:`last_epoch_change`: per condition, how much the last epoch still moved the test
  error, :math:`\Delta = e_T - e_{T-1}` (mean over usable seeds);
* :func:`schedule_table`: the same conditions and seeds trained for two budgets (e.g. the
  ``full`` preset's 10 epochs and ``long``'s 20), compared seed by seed: the mean errors, the
  paired difference (longer minus shorter) and :math:`\Delta` at each budget, with the
  criterion :math:`|\Delta| <` :data:`LAST_EPOCH_CRITERION` points on the mean over seeds.

Conditions are ``(norm, slice)``: BN over slices of ``slice`` images, GN / LN / IN at the
whole batch; runs that diverged or did not train are left out (and counted).
"""
from __future__ import annotations

from typing import NamedTuple

from .frames import condition_values, runs_frame
from .stats import Paired, mean_se, paired_test

__all__ = ["LAST_EPOCH_CRITERION", "BudgetGap", "describe_schedules", "last_epoch_change", "last_epoch_frame",
           "schedule_gap", "schedule_pairs", "schedule_table"]

#: Points of test error the last epoch may still change the mean over seeds by (Figure 1's issue).
LAST_EPOCH_CRITERION = 0.15


def last_epoch_frame(records: list[dict]):
    """One row per usable run: ``norm``, ``slice``, ``seed``, the ``final`` test error and the
    ``last_epoch_change`` :math:`e_T - e_{T-1}`."""
    import pandas as pd

    rows = []
    for r in records:
        if r["diverged"] or r.get("did_not_train") or len(r["history"]["test_error"]) < 2:
            continue
        c, e = r["config"], r["history"]["test_error"]
        rows.append({"norm": c["norm"], "slice": c["batch_size"] // c.get("devices", 1),
                     "seed": c["seed"], "final": e[-1], "last_epoch_change": e[-1] - e[-2]})
    return pd.DataFrame(rows, columns=["norm", "slice", "seed", "final", "last_epoch_change"])


def last_epoch_change(records: list[dict]):
    """Per norm and slice size, over usable seeds: the final test error and how much the last
    epoch changed it (the convergence check of a run whose lr ends at 0)."""
    return last_epoch_frame(records).groupby(["norm", "slice"])[["final", "last_epoch_change"]].mean()


def _conditions(df) -> list[tuple[str, int]]:
    """Figure 1's order: BN from the most images per slice to the fewest, then GN, LN, IN."""
    bn = sorted({int(s) for s in df[df["norm"] == "bn"]["slice"]}, reverse=True)
    top = bn[0] if bn else 32
    return [("bn", s) for s in bn] + [(n, top) for n in ("gn", "ln", "in") if n in set(df["norm"])]


def schedule_pairs(shorter: list[dict], longer: list[dict]):
    """The two budgets side by side, seed by seed: ``(pairs, conditions, budgets)``. ``pairs``
    has one row per ``norm``, ``slice``, ``seed`` usable at both budgets, with ``final_a`` /
    ``last_epoch_change_a`` (shorter) and ``final_b`` / ``last_epoch_change_b`` (longer);
    ``conditions`` lists the ``(norm, slice)`` of the longer budget in Figure 1's order;
    ``budgets`` names them (e.g. ``("10 epochs", "20 epochs")``)."""
    a, b = last_epoch_frame(shorter), last_epoch_frame(longer)
    pairs = a.merge(b, on=["norm", "slice", "seed"], suffixes=("_a", "_b"))
    budgets = tuple(f"{r[0]['config']['epochs']} epochs" if r else "?" for r in (shorter, longer))
    return pairs, _conditions(b), budgets


def schedule_table(shorter: list[dict], longer: list[dict], seeds: int = 3):
    """Per condition, the seeds that finished (usable) at both budgets, compared seed by seed.

    Columns: ``norm``, ``images per device``, ``seeds`` (paired), ``left out`` (runs of the
    longer budget that diverged or did not train), the mean test error at each budget over the
    paired seeds (columns named by the epochs, e.g. ``"10 epochs %"``), ``longer minus shorter``
    (a :class:`~gnlib.analysis.Paired`), the mean last-epoch change :math:`\\Delta` at each
    budget, and ``criterion``: ``"met"`` / ``"missed"`` (:math:`|\\Delta| <`
    :data:`LAST_EPOCH_CRITERION` at the longer budget) once all ``seeds`` are in, else
    ``"k of n seeds"``.
    """
    import pandas as pd

    a, b = runs_frame(shorter), runs_frame(longer)
    ea, eb = (f"{int(d['epochs'].iloc[0])} epochs" if len(d) else "?" for d in (a, b))
    da, db = last_epoch_frame(shorter), last_epoch_frame(longer)
    rows = []
    for norm, s in _conditions(b):
        sel = lambda d: d[(d["norm"] == norm) & (d["slice"] == s)]  # noqa: E731
        xa, xb = (condition_values(d, norm, s) for d in (a, b))
        paired = sorted(set(xa.index) & set(xb.index))
        ca, cb = (sel(d).set_index("seed")["last_epoch_change"].reindex(paired) for d in (da, db))
        delta = mean_se(cb.tolist())[0]
        crit = (f"{len(paired)} of {seeds} seeds" if len(paired) < seeds
                else "met" if abs(delta) < LAST_EPOCH_CRITERION else "missed")
        rows.append({"norm": norm, "images per device": s, "seeds": len(paired),
                     "left out": int((~sel(b)["usable"]).sum()),
                     f"{ea} %": mean_se(xa[paired].tolist())[0],
                     f"{eb} %": mean_se(xb[paired].tolist())[0],
                     "longer minus shorter": paired_test((xb[paired] - xa[paired]).tolist()),
                     f"last epoch, {ea}": mean_se(ca.tolist())[0],
                     f"last epoch, {eb}": delta, "criterion": crit})
    return pd.DataFrame(rows)


def describe_schedules(table) -> list[str]:
    """One sentence per condition of :func:`schedule_table`: the seeds finished at both budgets,
    both errors (means over those seeds), the seed-paired change with its verdict, and the last
    epoch's change at the longer budget."""
    cols = [c for c in table.columns if c.endswith("epochs %")]
    out = []
    for _, row in table.iterrows():
        s = row["images per device"]
        who = f"BN over {s} image{'s' * (s > 1)}" if row["norm"] == "bn" else row["norm"].upper()
        if not row["seeds"]:
            out.append(f"{who}: no seed finished at both budgets yet")
            continue
        p = row["longer minus shorter"]
        last = [c for c in table.columns if c.startswith("last epoch, ")][-1]
        seeds = f"{row['seeds']} seed{'s' * (row['seeds'] > 1)}"
        out.append(f"{who} ({seeds}): {row[cols[0]]:.2f} % -> {row[cols[1]]:.2f} %, longer minus shorter "
                   f"{p}: {p.verdict()}; {last.split(', ')[1]}: last epoch "
                   f"{round(row[last], 2) + 0.0:+.2f} points ({row['criterion']})")
    return out


class BudgetGap(NamedTuple):
    r"""A seed-paired gap at two budgets and how it changed: ``shorter``, ``longer`` (each
    :math:`\bar g \pm` SE over the same seeds) and ``change``, the paired test of
    :math:`g_{\text{longer}}(k) - g_{\text{shorter}}(k)`."""

    shorter: Paired
    longer: Paired
    change: Paired


def schedule_gap(shorter: list[dict], longer: list[dict], a: tuple[str, int],
                 b: tuple[str, int]) -> BudgetGap:
    """The seed-paired difference of conditions ``a`` minus ``b`` (``(norm, slice)``) at each
    budget, and its change from the shorter budget to the longer, over the seeds usable in both
    conditions at both budgets (so the budgets compare the same seeds)."""
    frames = [runs_frame(r) for r in (shorter, longer)]
    sel = [[condition_values(d, *cond) for cond in (a, b)] for d in frames]
    seeds = sorted(set.intersection(*(set(x.index) for pair in sel for x in pair)))
    gaps = [x[seeds] - y[seeds] for x, y in sel]
    return BudgetGap(*(paired_test(g.tolist()) for g in gaps), paired_test((gaps[1] - gaps[0]).tolist()))
