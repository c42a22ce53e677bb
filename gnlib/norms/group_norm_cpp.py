"""gnlib's fused C++ Group Norm kernel (``csrc/group_norm.cpp``): building and loading it,
its registered ``torch.library`` operators, and :class:`GroupNormCppFunction`, the autograd
Function that :func:`gnlib.norms.group_norm` runs for ``backend="cpp"`` / ``"auto"``.

The kernel is compiled on first use with :func:`torch.utils.cpp_extension.load` (a C++ compiler
and ninja are needed; under a minute, once: torch caches the build in ``TORCH_EXTENSIONS_DIR``,
default ``~/.cache/torch_extensions``) into a module with
``forward(x, weight, bias, G, eps, unbiased) -> (y, mean, rstd)`` and
``backward(dy, x, mean, rstd, weight, G, D, need_x, need_w) -> (dx, dweight, dbias)``.

It is built with ``-O3 -march=native -fopenmp`` (``-march=native``: 1.3-1.5x faster here, as it
lets the loops use the CPU's widest SIMD instructions); the module name carries a tag of this
CPU, so that a build cache shared between machines never loads a build made for another CPU. If
that build fails, a plain ``-O3`` one is tried. :func:`available` says whether one succeeded
(building it if not tried yet), :func:`why_unavailable` keeps the reason (no compiler, the build
error). A failure warns once and never raises here: ``group_norm(..., backend="cpp")`` raises
with that reason, ``backend="auto"`` quietly uses the Python implementation. A build (not a
load of a cached one) prints one line to stderr first; ``make install`` and Binder's
``postBuild`` build it ahead (``python -m gnlib.norms.group_norm_cpp``, with
``-W ignore::RuntimeWarning`` as ``gnlib`` imports this module first).
"""
from __future__ import annotations

import hashlib
import logging
import platform
import sys
import threading
import warnings
from pathlib import Path
from types import ModuleType

__all__ = ["FLAGS", "SOURCE", "GroupNormCppFunction", "available", "backward_op", "build_flags",
           "forward_op", "load", "machine_tag", "use_cpp", "why_unavailable"]

#: The C++ source, shipped as package data (pyproject ``[tool.setuptools.package-data]``).
SOURCE = Path(__file__).resolve().parent / "csrc" / "group_norm.cpp"
#: Compiler flags tried in order (``-fopenmp``: ``at::parallel_for`` threads and
#: ``#pragma omp simd`` reductions; without it the kernel runs on one thread, less vectorized).
FLAGS = (["-O3", "-march=native", "-fopenmp"], ["-O3"])

_lock = threading.Lock()
_module: ModuleType | None = None
_error: str | None = None
_flags: list[str] = []


def machine_tag() -> str:
    """8 hex digits naming this CPU (model and instruction-set flags) for ``-march=native``
    builds."""
    cpu = platform.machine() + platform.processor()
    try:
        cpu += "".join(line for line in Path("/proc/cpuinfo").read_text().splitlines()
                       if line.startswith(("model name", "flags", "Features")))
    except OSError:
        pass
    return hashlib.sha1(cpu.encode()).hexdigest()[:8]


def _build(flags: list[str]) -> ModuleType:
    quiet = logging.getLogger("torch.utils.cpp_extension")   # its import warns "No CUDA runtime
    level, _ = quiet.level, quiet.setLevel(logging.ERROR)     # is found" on CPU-only machines
    try:
        from torch.utils import cpp_extension
    finally:
        quiet.setLevel(level)

    native = "-march=native" in flags
    name = f"gnlib_group_norm_{machine_tag()}" if native else "gnlib_group_norm"
    ldflags = ["-fopenmp"] if "-fopenmp" in flags else []
    build_dir = _build_directory(name, flags)
    if not (build_dir / f"{name}.so").exists():
        print(f"gnlib: building the C++ Group Norm kernel ({' '.join(flags)}; once per machine, "
              "about a minute)", file=sys.stderr, flush=True)
    return cpp_extension.load(name=name, sources=[str(SOURCE)], extra_cflags=flags,
                              extra_ldflags=ldflags, build_directory=str(build_dir), verbose=False)


def _build_directory(name: str, flags: list[str]) -> Path:
    """A build folder of its own for this source, these flags and this Python environment, under
    torch's extension cache: two checkouts or venvs on one machine then never rebuild over each
    other (torch would, waiting on one lock), and an edited source gets a fresh build."""
    from torch.utils.cpp_extension import _get_build_directory

    key = hashlib.sha1("\0".join([sys.prefix, SOURCE.read_text(), *flags]).encode()).hexdigest()
    path = Path(_get_build_directory(name, verbose=False)).parent / f"{name}-{key[:10]}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def load() -> ModuleType | None:
    """The compiled extension module, building it on the first call; ``None`` if no build
    succeeded (then :func:`why_unavailable` says why). Warns once on failure, never raises."""
    global _module, _error
    if _module is not None or _error is not None:
        return _module
    with _lock:
        errors = []
        for flags in FLAGS:
            if _module is not None or _error is not None:
                break
            try:
                _module, _flags[:] = _build(flags), flags
            except Exception as exc:  # no compiler or ninja, a compile error, a load error
                errors.append(f"with {' '.join(flags)}: {type(exc).__name__}: {exc}".strip())
        if _module is None and _error is None:
            _error = (f"building gnlib's C++ Group Norm kernel ({SOURCE}) failed\n"
                      + "\n".join(errors))
            warnings.warn(_error + "\n(backend='auto' uses the Python implementation; "
                          "backend='python', the default, never needs the kernel)",
                          RuntimeWarning, stacklevel=2)
        return _module


def available() -> bool:
    """Whether the C++ kernel can be used here (builds it on the first call)."""
    return load() is not None


def build_flags() -> list[str]:
    """The compiler flags of the build in use (one of :data:`FLAGS`; empty if none)."""
    load()
    return list(_flags)


def why_unavailable() -> str:
    """Why the kernel cannot be used (each build attempt's error, with the compiler output);
    ``""`` if it can."""
    load()
    return _error or ""


# ---- the kernel as torch operators, for torch.compile ----------------------------------------
# Eager calls go straight to the module's functions (no dispatcher cost); under torch.compile,
# GroupNormCppFunction calls these registered operators instead, whose fake implementations give
# the output shapes and strides, so Dynamo traces through GN instead of breaking the graph at an
# opaque extension call.
import math  # noqa: E402
from typing import Any  # noqa: E402

import torch  # noqa: E402
from torch import Tensor  # noqa: E402

from .checks import denominator  # noqa: E402
from .group_norm import _backward_differentiable, _dense  # noqa: E402


@torch.library.custom_op("gnlib::group_norm_forward", mutates_args=())
def forward_op(x: Tensor, weight: Tensor | None, bias: Tensor | None, G: int, eps: float,
               unbiased: bool) -> tuple[Tensor, Tensor, Tensor]:
    """``(y, mean, rstd)`` of the kernel's forward."""
    y, mean, rstd = load().forward(x, weight, bias, G, eps, unbiased)
    return y, mean, rstd


@forward_op.register_fake
def _(x, weight, bias, G, eps, unbiased):
    stats = x.new_empty((x.shape[0], G))
    return torch.empty_like(x), stats, torch.empty_like(stats)


@torch.library.custom_op("gnlib::group_norm_backward", mutates_args=())
def backward_op(dy: Tensor, x: Tensor, mean: Tensor, rstd: Tensor, weight: Tensor | None, G: int,
                D: int, need_x: bool, need_w: bool) -> tuple[Tensor, Tensor, Tensor]:
    """``(dx, dweight, dbias)`` of the kernel's backward; an empty tensor for a gradient not
    needed (an operator returns tensors only)."""
    dx, dw, db = load().backward(dy, x, mean, rstd, weight, G, D, need_x, need_w)
    return (dx if dx is not None else x.new_empty(0), dw if dw is not None else x.new_empty(0),
            db)


@backward_op.register_fake
def _(dy, x, mean, rstd, weight, G, D, need_x, need_w):
    C = x.shape[1]
    return (torch.empty_like(x) if need_x else x.new_empty(0),
            x.new_empty(C) if need_w else x.new_empty(0), x.new_empty(C))


# ---- the kernel as an autograd Function --------------------------------------------------
class GroupNormCppFunction(torch.autograd.Function):
    r""":class:`~gnlib.norms.GroupNormFunction` with the forward and (B1)-(B2) in one fused C++ kernel
    (``csrc/group_norm.cpp``, built on first use by :func:`load`).

    Same arguments, same saved tensors (``x``, the ``(N, G)`` ``mean`` and ``rstd``, ``weight``)
    and same memory formats (channels-first or channels-last, no copy); CPU float32 / float64
    only (:func:`group_norm` sends other inputs to :class:`~gnlib.norms.GroupNormFunction`). Under
    ``create_graph=True`` the backward is :class:`~gnlib.norms.GroupNormFunction`'s differentiable one.
    Returns ``(y, mean, rstd)``; the statistics are not differentiable (per-device BN keeps its
    running averages from them).
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, G: int, weight: Tensor | None, bias: Tensor | None,
                eps: float, unbiased: bool) -> Tensor:
        x = _dense(x)
        compiling = torch.compiler.is_compiling()                    # traced: the registered op
        kernel = forward_op if compiling else load().forward
        y, mean, rstd = kernel(x, weight, bias, G, eps, unbiased)
        ctx.save_for_backward(x, mean, rstd, weight)
        ctx.G, ctx.eps, ctx.has_bias = G, eps, bias is not None
        ctx.D = denominator(x.shape[1] // G * math.prod(x.shape[2:]), unbiased)  # |S| or |S|-1
        ctx.mark_non_differentiable(mean, rstd)
        return y, mean, rstd

    @staticmethod
    def backward(ctx: Any, dy: Tensor, *_: Any) -> tuple[Tensor | None, ...]:
        x, mean, rstd, weight = ctx.saved_tensors
        need_x, _, need_w, need_b = ctx.needs_input_grad[:4]
        if torch.is_grad_enabled():                                  # create_graph=True
            dx, dw, db = _backward_differentiable(dy, x, ctx.G, weight, ctx.D, ctx.eps)
        else:                                                        # (B1), (B2) in C++
            compiling = torch.compiler.is_compiling()
            kernel = backward_op if compiling else load().backward
            dx, dw, db = kernel(dy, x, mean, rstd, weight, ctx.G, ctx.D, need_x, need_w)
            if weight is not None and weight.dtype != x.dtype:
                dw, db = (t if t is None else t.to(weight.dtype) for t in (dw, db))
        return (dx if need_x else None, None, dw if need_w else None,
                db if need_b and ctx.has_bias else None, None, None)


def use_cpp(backend: str, x: Tensor, weight: Tensor | None, bias: Tensor | None) -> bool:
    """Whether ``backend`` ("cpp" or "auto") runs the C++ kernel on these inputs: only CPU
    float32 / float64 ones (else the Python path). ``"cpp"`` raises if the kernel cannot be
    built; ``"auto"`` then takes the Python path."""
    if not (x.is_cpu and x.dtype in (torch.float32, torch.float64)
            and (weight is None or weight.is_cpu) and (bias is None or bias.is_cpu)):
        return False
    if available():
        return True
    if backend == "auto":
        return False
    raise RuntimeError("group_norm(backend='cpp'): the C++ kernel is not available: "
                       f"{why_unavailable()}\nUse backend='python' (or 'auto', "
                       "which falls back to it).")


if __name__ == "__main__":          # python -m gnlib.norms.group_norm_cpp: build now, say how
    if available():
        print(f"gnlib's C++ Group Norm kernel: ready (built with {' '.join(build_flags())})")
    else:
        print("gnlib's C++ Group Norm kernel: unavailable, GroupNorm(backend='auto') uses the "
              f"Python implementation:\n{why_unavailable()}")
