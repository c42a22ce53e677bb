"""Records as pandas tables: one row per run, per epoch, per BN-drift measurement; the names
and order of batch conditions. Runs that diverged or did not train are kept, flagged
``usable = False`` (:func:`gnlib.results.did_not_train`)."""
from __future__ import annotations

__all__ = ["RUN_COLUMNS", "bn_drift_frame", "condition_values", "condition_order", "history_frame", "non_iid_label",
           "non_iid_order", "runs_frame"]


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


def condition_values(df, norm: str, s: int, column: str = "test_error"):
    """``column`` of the usable runs of ``norm`` over slices of ``s`` images, by seed."""
    d = df[df["usable"] & (df["norm"] == norm) & (df["slice"] == s)]
    return d.set_index("seed")[column].astype(float)
