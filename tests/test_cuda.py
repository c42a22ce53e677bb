"""The CUDA path of training (``TrainConfig(device="cuda")``, ``--device cuda``): runs where a
GPU is present, skips with the reason elsewhere. The CPU-only parts (device resolution, clear
errors) always run."""
import pytest
import torch

from gnlib.train import TrainConfig, resolve_device, train

TINY = dict(dataset="synthetic", train_size=64, test_size=32, epochs=2, widths=(8, 16),
            blocks=(1, 1), groups=4, eval_batch=32, batch_size=8)
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="no CUDA device on this machine (torch.cuda.is_available() is False)")


def test_auto_resolves_to_what_exists_and_cuda_without_gpu_is_a_clear_error():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="torch.cuda.is_available"):
            resolve_device("cuda")
    with pytest.raises(ValueError, match="unknown device"):
        TrainConfig(device="tpu")


@needs_cuda
@pytest.mark.parametrize("norm, devices", [("bn", 1), ("bn", 4), ("gn", 1)])
def test_cuda_runs_are_deterministic_and_name_their_device(norm, devices):
    cfg = TrainConfig(norm=norm, devices=devices, device="cuda", augment=True, **TINY)
    a, b = train(cfg), train(cfg)
    assert a["device"].startswith("cuda") and a["config"]["device"] == "cuda"
    assert a["history"]["train_loss"] == b["history"]["train_loss"]
    assert a["test_error"] == b["test_error"]


@needs_cuda
def test_cuda_and_cpu_train_the_same_model_to_similar_losses():
    cpu = train(TrainConfig(norm="gn", **TINY))
    gpu = train(TrainConfig(norm="gn", device="cuda", **TINY))
    for x, y in zip(cpu["history"]["train_loss"], gpu["history"]["train_loss"]):
        assert abs(x - y) < 1e-2 * max(1.0, abs(x))

