"""README's opening paragraph states Figure 1's numbers: they must be the ones the committed
results give (the paragraph is typed; this test recomputes every number in it)."""
from pathlib import Path

import pytest

from gnlib.analysis import figure1_table, gap_sources, runs_frame, schedule_gap
from gnlib.experiments import grid, load_experiment

README = Path(__file__).resolve().parent.parent / "README.md"


def intro() -> str:
    """The paragraphs above the first section, on one line (the README wraps them)."""
    return " ".join(README.read_text().split("\n## ")[0].split())


def gap(p) -> str:
    """A seed-paired difference as the README writes it: ``+0.55 ± 0.16 points (p = 0.08)``."""
    return f"{p.mean:+.2f} ± {p.se:.2f} points (p = {p.p:.2f})".replace("-", "−")


@pytest.fixture(scope="module")
def figure1():
    records = load_experiment("figure1", "long")
    assert len(records) == len(grid("figure1", "long")), "the 20-epoch grid is not complete"
    return records, figure1_table(records).set_index(["norm", "images per device"])


def test_the_readme_names_the_schedule_and_the_seeds(figure1):
    records, _ = figure1
    c = records[0]["config"]
    seeds = len({r["config"]["seed"] for r in records})
    assert f"{c['train_size']:,} images, crop + flip, {c['epochs']} epochs, {seeds} seeds" in intro()
    assert "figures/figure1_long.png" in intro()


def test_the_readme_errors_are_the_committed_means(figure1):
    _, t = figure1
    text = intro()
    for key, digits in ((("bn", 32), 2), (("gn", 32), 2), (("bn", 2), 2), (("bn", 1), 1)):
        assert f"{t.loc[key, 'test error %']:.{digits}f} %" in text, key


def test_the_readme_gaps_are_the_seed_paired_ones(figure1):
    records, t = figure1
    text = intro()
    assert gap(t.loc[("gn", 32), "vs BN at 32"]) in text
    assert gap(t.loc[("bn", 2), "vs BN at 32"]) in text
    assert gap(t.loc[("bn", 2), "vs GN"]) in text
    at_10 = schedule_gap(load_experiment("figure1", "full"), records, ("bn", 2), ("bn", 32))
    assert gap(at_10.shorter) in text and gap(at_10.change) in text


def test_the_readme_train_mode_error_of_single_images(figure1):
    records, t = figure1
    assert f"{t.loc[('bn', 1), 'train-mode %']:.1f} %" in intro()
    recovered = gap_sources(runs_frame(records), 1)[2].change
    assert recovered.significant and recovered.mean < 0


def test_the_readme_middle_of_the_curve_is_within_seed_noise(figure1):
    _, t = figure1
    assert "BN over 16, 8 and 4 images per device stays within seed noise of BN over 32" in intro()
    for s in (16, 8, 4):
        assert not t.loc[("bn", s), "vs BN at 32"].significant, s
    assert not t.loc[("bn", 2), "vs BN at 32"].significant and t.loc[("bn", 1), "vs BN at 32"].significant
