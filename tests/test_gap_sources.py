"""gnlib.analysis.gap_sources: which evaluation recovers BN's small-slice gap, seed-paired."""
import math

import pandas as pd
import pytest

from gnlib.analysis import describe_gap_sources, gap_sources


def frame(rows):
    """``rows``: (slice, seed, running averages, PreciseBN, train-mode) test errors of BN runs."""
    df = pd.DataFrame(rows, columns=["slice", "seed", "test_error", "test_error_precise_bn",
                                     "test_error_train_mode"])
    return df.assign(norm="bn", usable=True)


RUNS = frame([(32, 0, 8.0, 8.0, 8.1), (32, 1, 8.2, 8.1, 8.2), (32, 2, 8.4, 8.4, 8.3),
              # 2 images: +1.0, +1.2, +0.8 with running averages; PreciseBN the same; train mode
              # the same too (a cost paid in training)
              (2, 0, 9.0, 9.1, 9.0), (2, 1, 9.4, 9.3, 9.4), (2, 2, 9.2, 9.2, 9.2),
              # 1 image: +30, +28, +32 with running averages; train mode closes 29, 27.5, 31.5 of it
              (1, 0, 38.0, 39.0, 9.1), (1, 1, 36.2, 37.0, 8.7), (1, 2, 40.4, 41.0, 8.8),
              (1, 3, 90.0, 90.0, 90.0)])                  # a seed without a run at 32: left out


def test_gaps_and_their_changes_are_seed_paired():
    ema, precise, train_mode = gap_sources(RUNS, 1)
    assert ema.evaluation == "running averages" and ema.change is None
    assert ema.gap.n == 3 and ema.gap.mean == pytest.approx(30.0)
    assert ema.gap.se == pytest.approx(2.0 / math.sqrt(3))
    assert precise.gap.mean == pytest.approx((31.0 + 28.9 + 32.6) / 3)
    assert train_mode.change.mean == pytest.approx(((1.0 - 30.0) + (0.5 - 28.0) + (0.5 - 32.0)) / 3)
    assert train_mode.change.significant


def test_descriptions_say_what_recovers_the_gap():
    lines = describe_gap_sources(RUNS, slices=(2, 1))
    assert lines[0] == "2 images per device minus 32, running averages: +1.00 ± 0.12 (n = 3), worse (p = 0.013)"
    assert lines[1].startswith("  PreciseBN: +1.03") and "recovers no significant part of it" in lines[1]
    assert lines[2].startswith("  train-mode statistics: +1.00") and "recovers no significant part of it" in lines[2]
    assert lines[3].startswith("1 image per device minus 32, running averages: +30.00")
    assert "recovers no significant part of it" in lines[4]
    assert lines[5].startswith("  train-mode statistics: +0.67") and "recovers 98 % of it" in lines[5]


def test_no_gap_means_nothing_to_recover():
    df = frame([(32, s, 9.0, 9.0, 9.0) for s in range(3)] + [(2, s, 8.9, 9.0, 8.8 + 0.01 * s) for s in range(3)])
    assert "no gap to recover" in describe_gap_sources(df, slices=(2,))[1]
