"""The block float converter must equal Python's float() bit for bit, or decline (None)."""

from __future__ import annotations

import numpy as np
import pytest

from scoring.parsers.fastfloat import _fixed_width, parse_float_block

RNG = np.random.default_rng(12345)
VALUES = np.concatenate([RNG.random(20000), RNG.normal(0, 30, 20000), RNG.random(5000) * 1e-4,
                         [0.0, 1.0, 0.5, 1e-22, 9.999999e21]])


@pytest.mark.parametrize("fmt", ["{:.6f}", "{:.4f}", "{:.1f}", "{:.0f}", "{:.15f}", "{:.16f}",
                                 "{:.3e}", "{:.10e}", "{:.14e}", "{:.18e}", "{!r}", "{:+.5f}",
                                 "{:.6E}", "{:g}"])
def test_bit_identical_to_float(fmt):
    strs = [fmt.format(float(v)) for v in VALUES]
    ref = np.array([float(s) for s in strs])
    got = parse_float_block(",".join(strs), len(strs))
    assert got is not None
    assert np.array_equal(got.view(np.int64), ref.view(np.int64))


@pytest.mark.parametrize("fmt", ["{:.6f}", "{:.12f}", "{:.4e}", "{:.14e}", "{:.0f}"])
def test_fixed_width_tier_is_used_and_exact(fmt):
    p = RNG.random(50000)
    strs = [fmt.format(float(v)) for v in p]
    ref = np.array([float(s) for s in strs])
    got = _fixed_width(",".join(strs).encode(), len(strs))
    assert got is not None
    assert np.array_equal(got.view(np.int64), ref.view(np.int64))
    neg = ["-" + s for s in strs]
    got = _fixed_width(",".join(neg).encode(), len(neg))
    assert np.array_equal(got.view(np.int64), (-ref).view(np.int64))


def test_mixed_signs_fixed_width():
    strs = ["+1.50", "-2.25", "+0.00", "-0.00"]
    got = _fixed_width(",".join(strs).encode(), 4)
    ref = np.array([float(s) for s in strs])
    assert np.array_equal(got.view(np.int64), ref.view(np.int64))


@pytest.mark.parametrize("block,count", [
    ("1,2,3x", 3), ("1,,3", 3), ("1,2", 3), ("1,2,3", 2), ("1,nan,3", 3), ("1,inf,3", 3),
    ("1 2,3,4", 3), ("1-,2,3", 3), ("1.2.3,4,5", 3), ("0x10,1,2", 3), ("1_0,1,2", 3),
    ("١,2,3", 3), ("", 0), ("1e5e3,1,2", 3), ("1,2,3-", 3), ("1,2,3e", 3),
])
def test_declines_anything_unusual(block, count):
    assert parse_float_block(block, count) is None


def test_spaces_around_commas():
    assert parse_float_block(" 1.5 , 2 ,3 ", 3).tolist() == [1.5, 2.0, 3.0]
