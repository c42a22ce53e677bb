"""Tables and verdict sentences of each experiment, from records (seed-paired, runs that did
not train left out and counted)."""
from __future__ import annotations

from ..paper import METHOD_FACTS, NORM_LABELS
from .frames import condition_order, history_frame, runs_frame  # noqa: F401  (history_frame: re-export)
from .stats import Paired, mean_se, paired_difference, paired_test

__all__ = ["commit_verdict", "commits_frame", "condition_table", "describe_conditions",
           "describe_figure1", "describe_small_batch", "figure1_table",
           "method_summary", "same_commit", "summary_table", "TWINS", "twin_paired", "twin_runs"]


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
    condition (:func:`non_iid_label`) and norm, in the order of :func:`non_iid_order`, and
    ``left_out``: the runs of that cell left out (diverged or did not train)."""
    df = runs_frame(records)
    left = (~df["usable"]).groupby([df["condition"], df["norm"]]).sum().astype(int)
    df = df[df["usable"]]
    t = df.groupby(["condition", "norm"])[["test_error", "test_error_train_mode"]].agg(
        ["mean", "sem", "count"])
    t.columns = [f"{a}_{b}" for a, b in t.columns]
    t["left_out"] = left.reindex(t.index).fillna(0).astype(int)
    return t.reindex(condition_order(records), level="condition").round(2)


def describe_conditions(records: list[dict], floor: float | None = None) -> list[str]:
    """One sentence per batch condition of the ``non-iid`` experiment: BN's, SyncBN's and GN's
    test error with the commits of its runs, and their seed-paired difference from the
    shuffled run of the same norm (BN's for SyncBN), with BN's train-mode error; runs left out
    are counted. Where the two sides ran at different commits, :func:`commit_verdict` gives no
    verdict for a difference below ``floor`` (the between-commit noise floor, points)."""
    df = commits_frame(records)
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
            mine = _commits(g)
            txt = f"{name} {m:.2f} % ({n} seed{'s' * (n != 1)}" + (
                f"; {left} did not train, left out" if left else "") + f"; commit {mine})"
            if cond != "shuffled":
                base = lambda d, r=ref: (d["norm"] == r) & (d["condition"] == "shuffled")  # noqa: E731
                p = paired_difference(df, here, base)
                theirs = _commits(df[base(df)])
                txt += (f", minus shuffled {ref.upper()} ({theirs}): {p}, "
                        f"{commit_verdict(p, mine.split(', '), theirs.split(', '), floor)}")
            if norm == "bn":
                txt += f", train-mode statistics {mean_se(g[g['usable']]['test_error_train_mode'])[0]:.2f} %"
            parts.append(txt)
        out.append(f"{cond}: " + "; ".join(parts))
    return out


def describe_small_batch(records: list[dict], reference: str = "bn",
                         floor: float | None = None) -> list[str]:
    """One sentence per (batch size, norm) of the ``small-batch`` experiment: the seed-paired
    difference from ``reference`` at the same batch size. With ``floor`` (the between-commit
    noise floor, points) each sentence names the commits of both sides, and where they differ
    :func:`commit_verdict` gives no verdict for a difference below the floor."""
    df = commits_frame(records)
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
            if floor is None:
                out.append(f"batch {b}: {n.upper():5s} {m:.2f} %, minus {reference.upper()}: {p}: "
                           f"{p.verdict()}")
                continue
            mine, theirs = _commits(df[sel(df)]), _commits(df[ref(df)])
            out.append(f"batch {b}: {n.upper():5s} {m:.2f} % ({mine}), minus "
                       f"{reference.upper()} ({theirs}): {p}: "
                       f"{commit_verdict(p, mine.split(', '), theirs.split(', '), floor)}")
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



# --------------------------------------------------------------------------------------
# The noise floor: the same model and seeds, run at two commits
# --------------------------------------------------------------------------------------
#: GN settings of the ``groups`` grid that are, layer for layer, another norm of the
#: ``batch-size`` grid at batch 32 (same model, same seeds): C/G = 1 is IN, G = 1 is LN, and
#: G = 32 is the default GN.
TWINS = (("C/G = 1", "in"), ("G = 1", "ln"), ("G = 32", "gn"))


def _twin_mask(df, setting: str):
    if setting == "C/G = 1":
        return df["channels_per_group"] == 1
    g = int(setting.split("=")[1])
    return (df["groups"] == g) & df["channels_per_group"].isna()


def twin_runs(groups: list[dict], batch_size: list[dict]):
    """The runs of the same model and seed in the two files, side by side: one row per twin
    pair and seed with both test errors, both commits and their difference (groups minus
    batch-size), usable runs only."""
    import pandas as pd

    def frame(records: list[dict]):
        df = runs_frame(records)
        df["commit"] = [r.get("git_commit", "?") for r in records]
        return df[df["usable"]]

    g, b = frame(groups), frame(batch_size)
    b = b[(b["batch_size"] == 32) & (b["devices"] == 1) & (b["batching"] == "shuffled")]
    rows = []
    for setting, norm in TWINS:
        mine = g[_twin_mask(g, setting) & (g["batch_size"] == 32)].set_index("seed")
        other = b[b["norm"] == norm].set_index("seed")
        for seed in sorted(set(mine.index) & set(other.index)):
            rows.append({"twins": f"GN {setting} = {norm.upper()}", "seed": int(seed),
                         "groups.jsonl": mine.loc[seed, "test_error"],
                         "commit (groups)": mine.loc[seed, "commit"],
                         "batch-size.jsonl": other.loc[seed, "test_error"],
                         "commit (batch-size)": other.loc[seed, "commit"]})
    out = pd.DataFrame(rows, columns=["twins", "seed", "groups.jsonl", "commit (groups)",
                                      "batch-size.jsonl", "commit (batch-size)"])
    out["difference"] = out["groups.jsonl"] - out["batch-size.jsonl"]
    return out


def twin_paired(twins, label: str):
    """The seed-paired test (:class:`gnlib.analysis.Paired`) of one twin pair's difference:
    what a test would conclude about two runs of the *same* model from two commits."""
    return paired_test(twins[twins["twins"] == label]["difference"].tolist())


# --------------------------------------------------------------------------------------
# Comparisons across commits
# --------------------------------------------------------------------------------------
def commits_frame(records: list[dict]):
    """:func:`runs_frame` plus ``commit``: the ``git_commit`` each run was made at (``"?"``
    where not recorded; ``+dirty``: from a working tree with uncommitted changes)."""
    df = runs_frame(records)
    df["commit"] = [r.get("git_commit") or "?" for r in records]
    return df


def _commits(df) -> str:
    """The commits of the usable runs of ``df`` (of all its runs if none is usable), sorted,
    comma-separated."""
    use = df[df["usable"]] if df["usable"].any() else df
    return ", ".join(sorted(set(use["commit"])))


def same_commit(commits_a, commits_b) -> bool:
    """True when both sides ran at one and the same commit, without uncommitted changes (two
    ``+dirty`` runs of one commit may have run different code)."""
    a, b = set(commits_a), set(commits_b)
    return len(a) == 1 and a == b and not any(c == "?" or c.endswith("+dirty") for c in a)


def commit_verdict(p: Paired, commits_a, commits_b, floor: float | None = None,
                   worse: str = "worse", better: str = "better") -> str:
    """The verdict of a seed-paired difference ``p`` whose sides ran at ``commits_a`` and
    ``commits_b``: :meth:`Paired.verdict` when :func:`same_commit`; otherwise it says
    "different commits" and, where ``|p.mean|`` is below ``floor`` (how far runs of the *same*
    model and seed at two commits already differ, notebook 06), gives no verdict: the gap
    could come from the code change, not from the method."""
    if same_commit(commits_a, commits_b):
        return p.verdict(worse, better)
    if floor is None or p.n < 2 or p.mean != p.mean:
        return f"different commits: {p.verdict(worse, better)}"
    if abs(p.mean) < floor:
        return (f"different commits, |difference| below the between-commit floor "
                f"({floor:.2f}): no verdict")
    return (f"different commits, |difference| above the between-commit floor ({floor:.2f}): "
            f"{p.verdict(worse, better)}")
