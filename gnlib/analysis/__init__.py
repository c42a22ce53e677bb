r"""Tables, seed-paired statistics and verdict sentences from results records (pandas, no torch).

* :mod:`~gnlib.analysis.frames`: records as tables (one row per run / epoch), condition names;
* :mod:`~gnlib.analysis.stats`: seed-paired differences and t-tests (:class:`Paired`);
* :mod:`~gnlib.analysis.reports`: each experiment's table and verdict sentences;
* :mod:`~gnlib.analysis.schedule`: was the schedule long enough (last epoch, two budgets).

Runs with the same seed share the initialization, the data order and the augmentation, so two
configurations are compared seed by seed; a verdict says "worse" / "better" only when the
two-sided p < 0.05. Runs that diverged or did not train (:func:`gnlib.results.did_not_train`)
are left out of every mean and counted.
"""
from .frames import (RUN_COLUMNS, bn_drift_frame, condition_order, history_frame, non_iid_label,
                     non_iid_order, runs_frame)
from .gap_sources import EVALUATIONS, GapSource, describe_gap_sources, gap_sources
from .reports import (TWINS, condition_table, describe_conditions, describe_figure1,
                      describe_small_batch, figure1_table, method_summary,
                      summary_table, twin_paired, twin_runs)
from .schedule import (LAST_EPOCH_CRITERION, BudgetGap, describe_schedules, last_epoch_change,
                       schedule_gap, schedule_pairs, schedule_table)
from .stats import ALPHA, Paired, describe_paired, mean_se, paired_difference, paired_test

__all__ = ["ALPHA", "BudgetGap", "EVALUATIONS", "GapSource", "LAST_EPOCH_CRITERION", "RUN_COLUMNS",
           "TWINS", "bn_drift_frame", "condition_order", "condition_table", "describe_conditions",
           "describe_figure1", "describe_gap_sources", "describe_paired", "describe_schedules",
           "describe_small_batch", "figure1_table", "gap_sources", "history_frame",
           "last_epoch_change", "mean_se", "method_summary", "non_iid_label", "non_iid_order",
           "Paired", "paired_difference", "paired_test", "runs_frame", "schedule_gap",
           "schedule_pairs", "schedule_table", "summary_table", "twin_paired", "twin_runs"]
