"""Comparing against numbers made on another machine.

Fixtures are made once, on one CPU (tests/engine/fixtures/README.md names it). Another CPU (an AMD
EPYC instead of an Intel Xeon, another oneDNN / MKL code path, FMA or not) may round the last bit
of a float differently, so:

- integer and bool tensors (assignments, labels, kept indices, valid flags) are compared exactly;
- float tensors may differ by at most ``max_ulp`` units in the last place of the *expected*
  value's magnitude (``FIXTURE_ULP`` by default), NaNs in the same places.

A real difference (a wrong formula, a wrong order of operations that moves a box by a pixel,
a dropped term) is thousands of ULP away, so a budget of a few ULP still catches it.
"""
from __future__ import annotations

import torch

__all__ = ["FIXTURE_ULP", "assert_boxes_close", "assert_ulp_close", "ulp_distance"]

FIXTURE_ULP = 4


def _spacing(x: torch.Tensor) -> torch.Tensor:
    """The gap between |x| and the next representable float of x's dtype (numpy's ``spacing``)."""
    a = x.abs()
    return torch.nextafter(a, torch.full_like(a, float("inf"))) - a


def ulp_distance(actual: torch.Tensor, expected: torch.Tensor) -> torch.Tensor:
    """|actual - expected| in units of the last place of ``expected`` (elementwise, float64)."""
    diff = (actual.double() - expected.double()).abs()
    return diff / _spacing(expected).double()


def assert_ulp_close(actual: torch.Tensor, expected: torch.Tensor, max_ulp: int = FIXTURE_ULP,
                     what: str = "") -> None:
    """Exact for integer/bool tensors; within ``max_ulp`` ULP of ``expected`` for floats."""
    label = f"{what}: " if what else ""
    assert actual.shape == expected.shape, f"{label}shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    assert actual.dtype == expected.dtype, f"{label}dtype {actual.dtype} != {expected.dtype}"
    if not (actual.is_floating_point() or actual.is_complex()):
        mismatch = (actual != expected).nonzero()
        assert mismatch.numel() == 0, f"{label}{len(mismatch)} integer values differ, first at {mismatch[0].tolist()}"
        return
    nan_a, nan_e = actual.isnan(), expected.isnan()
    assert torch.equal(nan_a, nan_e), f"{label}NaNs in different places"
    inf_e = expected.isinf()
    assert torch.equal(actual[inf_e], expected[inf_e]), f"{label}infinities differ"
    finite = ~(nan_e | inf_e)
    if not finite.any():
        return
    dist = ulp_distance(actual[finite], expected[finite])
    worst = int(dist.argmax())
    assert dist[worst] <= max_ulp, (
        f"{label}{int((dist > max_ulp).sum())} of {dist.numel()} values differ by more than {max_ulp} ULP; "
        f"worst {float(dist[worst]):.1f} ULP: {float(actual[finite][worst])!r} vs {float(expected[finite][worst])!r}")


def assert_boxes_close(actual: torch.Tensor, expected: torch.Tensor, max_ulp: int = FIXTURE_ULP,
                       what: str = "boxes") -> None:
    """Decoded boxes (N, 4): each coordinate within ``max_ulp`` ULP of its box's largest coordinate.

    A coordinate is a difference or sum of operands as large as the box (a prior's centre and a
    distance): a last-bit difference in those moves a coordinate near 0 by far more than its own
    ULP (GFL's x1 = 0.1674 from 64 - 63.83, one ULP of 64 off on an AVX2-only AMD EPYC), so the
    budget is counted on the box's scale, not on each coordinate's."""
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    if expected.numel() == 0:
        return
    diff = (actual.double() - expected.double()).abs()
    scale = _spacing(expected.abs().amax(dim=-1, keepdim=True)).double()
    dist = diff / scale
    worst = int(dist.argmax())
    assert float(dist.view(-1)[worst]) <= max_ulp, (
        f"{what}: {int((dist > max_ulp).sum())} coordinates differ by more than {max_ulp} ULP of their box's "
        f"largest; worst {float(dist.view(-1)[worst]):.1f}: {float(actual.view(-1)[worst])!r} vs "
        f"{float(expected.view(-1)[worst])!r}")
