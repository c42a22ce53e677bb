"""Steps per second of gnlib.train's in-memory loop vs a plain torchvision DataLoader loop.

Same model (gnlib.models default), same SGD step, 1 thread. The DataLoader loop is the
textbook one: ``torchvision.datasets.FashionMNIST`` with ``ToTensor + Normalize`` per sample,
``DataLoader(shuffle=True, num_workers=0)``. Also prints GN vs BN cost per step.

    .venv/bin/python bench/bench_training.py [--steps 40]
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F


def step_fn(model, opt):
    def step(xb, yb):
        loss = F.cross_entropy(model(xb), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def make_inmemory(norm: str, B: int):
    """gnlib.train's loop: slices of a seeded permutation of in-memory float tensors."""
    from gnlib.data import load_fashion_mnist, to_float
    from gnlib.models import build_model

    xtr, ytr = load_fashion_mnist()[:2]
    x, y = to_float(xtr[:10000]), ytr[:10000]
    model = build_model(norm)
    step = step_fn(model, torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9))
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    state = {"i": 0}

    def one() -> None:
        i = state["i"] = (state["i"] + 1) % (len(x) // B)
        idx = perm[i * B:(i + 1) * B]
        step(x[idx], y[idx])
    return one


def make_dataloader(norm: str, B: int):
    """The textbook loop: torchvision dataset, per-sample transforms, DataLoader."""
    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms

    from gnlib.data import MEAN, STD, find_source, prepare
    from gnlib.models import build_model

    root = prepare(find_source()[0])
    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize((MEAN,), (STD,))])
    ds = datasets.FashionMNIST(str(root), train=True, download=False, transform=tf)
    loader = DataLoader(ds, batch_size=B, shuffle=True, num_workers=0, drop_last=True)
    model = build_model(norm)
    step = step_fn(model, torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9))
    state = {"it": iter(loader)}

    def one() -> None:
        try:
            xb, yb = next(state["it"])
        except StopIteration:
            state["it"] = iter(loader)
            xb, yb = next(state["it"])
        step(xb, yb)
    return one


def best_rate(fns: list, steps: int, rounds: int = 5) -> list[float]:
    """Steps/s of each function: interleaved blocks of ``steps``, best block of ``rounds`` (the
    minimum time is the least disturbed by other processes on a shared machine)."""
    for f in fns:
        for _ in range(3):
            f()
    best = [float("inf")] * len(fns)
    for _ in range(rounds):
        for k, f in enumerate(fns):
            t = time.perf_counter()
            for _ in range(steps):
                f()
            best[k] = min(best[k], time.perf_counter() - t)
    return [steps / b for b in best]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=40, help="steps per timed block (B=2)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, 1 thread, best of 5 interleaved blocks")
    print(f"{'norm':>4} {'B':>3} {'gnlib steps/s':>14} {'DataLoader steps/s':>19} {'ratio':>6}")
    rates = {}
    for norm in ("gn", "bn"):
        for B in (2, 32):
            steps = args.steps if B == 2 else max(args.steps // 4, 5)
            a, b = best_rate([make_inmemory(norm, B), make_dataloader(norm, B)], steps)
            rates[norm, B] = a
            print(f"{norm:>4} {B:>3} {a:14.1f} {b:19.1f} {a / b:6.2f}x")
    for B in (2, 32):
        print(f"GN / BN cost per step at B={B}: {rates['bn', B] / rates['gn', B]:.2f}x "
              f"({1000 / rates['gn', B]:.1f} ms vs {1000 / rates['bn', B]:.1f} ms)")


if __name__ == "__main__":
    main()
