"""gnlib.batch_stats: the slice statistics of real activations, checked against direct
computations on the layers' inputs; the committed BN model; the figure and the widget."""
from __future__ import annotations

import io
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from gnlib.batch_stats import BN32_MODEL, ActivationMoments, load_trained_bn  # noqa: E402
from gnlib.diagnostics import bn_layers  # noqa: E402
from gnlib.models import build_model  # noqa: E402
from gnlib.plots.activations import BatchStatisticsFigure, plot_batch_statistics  # noqa: E402

N = 64


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = build_model("bn")
    for layer in bn_layers(m):           # running averages that are not the defaults
        layer.running_mean.uniform_(-0.5, 0.5)
        layer.running_var.uniform_(0.5, 2.0)
    return m.eval()


@pytest.fixture(scope="module")
def x():
    g = torch.Generator().manual_seed(1)
    # images that differ in brightness: the variance between images is not small
    return torch.randn(N, 1, 28, 28, generator=g) + torch.linspace(-1, 1, N).view(N, 1, 1, 1)


@pytest.fixture(scope="module")
def moments(model, x):
    return ActivationMoments(model, x, example=5, batch_size=24)   # batches cut the example's


def inputs_of(model, x, layer):
    """The layer's input for all of ``x`` (eval mode), collected directly."""
    got = []
    h = bn_layers(model)[layer].register_forward_hook(lambda m, a, o: got.append(a[0]))
    with torch.no_grad():
        model(x)
    h.remove()
    return got[0]


@pytest.mark.parametrize("layer", [0, 4])
def test_moments_are_the_layer_inputs_moments(model, x, moments, layer):
    a = inputs_of(model, x, layer).double()
    L = moments.layers[layer]
    assert L.shape == tuple(a.shape[1:])
    torch.testing.assert_close(L.mean, a.mean((2, 3)))
    torch.testing.assert_close(L.sq, (a * a).mean((2, 3)))
    torch.testing.assert_close(L.example, a[5].float())
    torch.testing.assert_close(L.running_mean.float(), bn_layers(model)[layer].running_mean)
    assert [m.name for m in moments.layers][:2] == ["stem.1", "stages.0.norm1"]


def test_slice_statistics_match_a_direct_computation(model, x, moments):
    a = inputs_of(model, x, 1).double()
    for s in (1, 3, 8):
        v = moments.view(1, 7, s, n_slices=40)
        idx = moments.slices(s, 40)
        assert len(v.slice_means) == len(idx) >= 40
        for k in (0, len(idx) - 1):
            values = a[idx[k], 7]
            assert v.slice_means[k] == pytest.approx(values.mean().item(), abs=1e-9)
            assert v.slice_vars[k] == pytest.approx(values.var(unbiased=False).item(), abs=1e-9)
    assert v.population_mean == pytest.approx(a[:, 7].mean().item(), abs=1e-9)
    assert v.population_var == pytest.approx(a[:, 7].var(unbiased=False).item(), abs=1e-9)


def test_slices_are_disjoint_within_a_permutation(moments):
    idx = moments.slices(8, 20)
    per = N // 8
    for p in range(0, len(idx), per):
        assert sorted(idx[p:p + per].flatten().tolist()) == list(range(N))


def test_slices_of_all_images_give_the_population_statistics(moments):
    v = moments.view(2, 3, N, n_slices=5)
    np.testing.assert_allclose(v.slice_means, v.population_mean, rtol=0, atol=1e-12)
    np.testing.assert_allclose(v.slice_vars, v.population_var, rtol=1e-9)
    assert v.mean_spread == pytest.approx(0, abs=1e-9) and v.var_ratio == pytest.approx(1)


def test_one_image_slices_miss_the_variance_between_images(moments):
    for layer, channel in ((0, 0), (3, 10), (6, 100)):
        L = moments.layers[layer]
        v = moments.view(layer, channel, 1, n_slices=N)         # one permutation: every image once
        between = L.mean[:, channel].var(unbiased=False).item()
        # law of total variance: population = mean within-image variance + between images
        assert v.slice_vars.mean() == pytest.approx(v.population_var - between, rel=1e-9)
        assert v.var_ratio < 1
        ratios = [moments.view(layer, channel, s, n_slices=256).var_ratio for s in (1, 4, 16)]
        assert ratios[0] < ratios[1] < ratios[2] < 1.0 + 1e-9


def test_example_normalized_by_bn_with_its_slice_and_by_gn(model, x, moments):
    layer, channel = 4, 9
    a = inputs_of(model, x, layer)
    for s in (1, 4):
        v = moments.view(layer, channel, s, groups=32)
        mine = moments.example_slice(s)
        assert mine[0] == 5 and len(set(mine.tolist())) == s
        bn = F.batch_norm(a[mine].double(), None, None, training=True, eps=1e-5)[0, channel]
        np.testing.assert_allclose(v.bn_example, bn.numpy(), rtol=1e-5, atol=1e-5)
        gn = F.group_norm(a[5:6], 32, eps=1e-5)[0, channel]
        np.testing.assert_allclose(v.gn_example, gn.numpy(), rtol=1e-5, atol=1e-5)


def test_bad_choices_are_refused(moments):
    with pytest.raises(ValueError, match="layer must be in 0..6"):
        moments.view(7, 0, 2)
    with pytest.raises(ValueError, match="channel must be in 0..63"):
        moments.view(0, 64, 2)
    with pytest.raises(ValueError, match="slice_size must be in 1..64"):
        moments.view(0, 0, 65)
    with pytest.raises(ValueError, match="example must index"):
        ActivationMoments(build_model("bn"), torch.zeros(2, 1, 28, 28), example=2)
    with pytest.raises(ValueError, match="no BN layer"):
        ActivationMoments(build_model("gn"), torch.zeros(2, 1, 28, 28))


def test_the_committed_bn_model():
    path = Path(BN32_MODEL)
    assert path.stat().st_size < 1_100_000
    state = torch.load(path, map_location="cpu")
    assert {v.dtype for v in state.values() if v.is_floating_point()} == {torch.float16}
    model = load_trained_bn()
    assert not model.training
    layers = bn_layers(model)
    assert len(layers) == 7 and all(int(m.num_batches_tracked) > 0 for m in layers)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    readme = (path.parent / "README.md").read_text()
    assert path.name in readme


def test_the_figure_shows_the_view(moments):
    v = moments.view(0, 2, 4, n_slices=128)
    fig = plot_batch_statistics(v)
    ax_m, ax_v = fig.axes[:2]
    for ax, values, pop in ((ax_m, v.slice_means, v.population_mean),
                            (ax_v, v.slice_vars, v.population_var)):
        counts = ax.patches[0].get_data().values
        assert counts.sum() == len(values)
        assert ax.lines[0].get_xdata()[0] == pytest.approx(pop)
        assert ax.get_xlabel() and ax.get_ylabel() == "slices" and ax.get_title()
    assert fig.legends and fig.get_suptitle()
    drawing = BatchStatisticsFigure()
    axes = list(drawing.fig.axes)
    drawing.update(v)
    drawing.update(moments.view(5, 3, 1))
    assert drawing.fig.axes == axes                                # redrawn in place
    assert drawing.images[0].get_array().shape == (4, 4)
    assert "1 image" in drawing.fig.get_suptitle()


def test_widget_redraws_on_every_control(moments):
    from gnlib.widgets import batch_statistics_explorer

    box = batch_statistics_explorer(moments, layer=4, channel=120, slice_size=2, n_slices=256)
    assert batch_statistics_explorer(moments, n_slices=16).explorer.last.layer == \
        moments.layers[moments.most_between()[0]].name
    c, ex = box.controls, box.explorer
    assert c["slice"].description == "slice size" and list(c["slice"].options) == [1, 2, 4, 8, 16, 32]
    image = box.children[2]
    seen = {image.value}
    c["slice"].value = 32
    assert ex.last.slice_size == 32 and image.value not in seen
    seen.add(image.value)
    c["channel"].value = 3
    assert ex.last.channel == 3 and image.value not in seen
    n = ex.redraws
    c["layer"].value = 6
    assert ex.redraws == n + 1 and ex.last.layer == "stages.1.shortcut.1"
    c["channel"].value = 120
    c["layer"].value = 0                                           # 64 channels: clamped, one redraw
    assert c["channel"].max == 63 and c["channel"].value == 63 and ex.last.channel == 63
    assert ex.redraws == n + 3
    assert "slices of 32 images" in box.children[3].value
    t0 = time.perf_counter()
    ex.redraw()
    assert time.perf_counter() - t0 < 3.0        # ~0.1 s unloaded; generous for busy machines
    assert io.BytesIO(image.value).read(8) == b"\x89PNG\r\n\x1a\n"


def test_between_image_share_is_what_one_image_slices_miss(moments):
    for layer in (0, 5):
        share = moments.between_image_share(layer)
        assert share.shape == (moments.layers[layer].shape[0],) and (share >= 0).all()
        for channel in (0, 17):
            v = moments.view(layer, channel, 1, n_slices=N)
            assert v.var_ratio == pytest.approx(1 - share[channel], rel=1e-9)
    layer, channel = moments.most_between()
    medians = [np.median(moments.between_image_share(i)) for i in range(len(moments.layers))]
    assert medians[layer] == max(medians)
    assert moments.between_image_share(layer)[channel] == moments.between_image_share(layer).max()
