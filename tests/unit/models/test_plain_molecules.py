"""The plain molecule denoiser: permutation-equivariant only; frame-averaged, exactly E(3)-equivariant
(float64); the EQGAT interface (shapes, zero-CoM positions, symmetric bonds), save/load, bad input."""

import pytest
import torch

from geodiff.errors import GeodiffValueError
from geodiff.models.plain_molecules import PlainMoleculeDenoiser
from geodiff.testing import assert_equivariant
from tests.unit.models.test_eqgat_diff import KINDS_IN, KINDS_OUT, noisy_inputs
from tests.unit.models.test_eqgat_diff import as_tuple as run


def small(**kw):
    torch.manual_seed(0)
    m = PlainMoleculeDenoiser(hidden=16, edge_dim=8, num_layers=2, heads=2, **kw).double().eval()
    with torch.no_grad():  # the position head starts at zero: move it so positions depend on the input
        m.pos_head.weight.normal_(0, 0.3)
    return m


def test_plain_is_permutation_equivariant_but_not_rotation_equivariant(qm9_small):
    inputs = list(noisy_inputs(qm9_small))
    m = small()
    with torch.no_grad():
        assert_equivariant(run(m), inputs, KINDS_IN, KINDS_OUT, rotations=False, reflections=False,
                           translations=False)  # fmt: skip
        with pytest.raises(AssertionError, match="rotation"):
            assert_equivariant(run(m), inputs, KINDS_IN, KINDS_OUT, reflections=False, translations=False,
                               permutations=False)  # fmt: skip


@pytest.mark.parametrize("group", ["E", "SE"])
def test_frame_averaged_plain_is_exactly_equivariant(qm9_small, group):
    inputs = list(noisy_inputs(qm9_small))
    m = small(frame_averaging=group)
    with torch.no_grad():
        errs = assert_equivariant(run(m), inputs, KINDS_IN, KINDS_OUT, reflections=group == "E")
    assert max(errs.values()) < 1e-9


def test_interface_roundtrip_and_bad_input(qm9_small, tmp_path):
    pos, atoms, charges, bonds, t, batch, ei = noisy_inputs(qm9_small)
    m = small()
    with torch.no_grad():
        out = m(pos, atoms, charges, bonds, t, batch, ei)
    assert out["pos"].shape == pos.shape and out["bonds"].shape == bonds.shape
    for g in range(3):
        assert out["pos"][batch == g].mean(0).abs().max() < 1e-12
    m.float().save_pretrained(tmp_path)
    again = PlainMoleculeDenoiser.from_pretrained(tmp_path)
    with torch.no_grad():
        a = m(pos.float(), atoms.float(), charges.float(), bonds.float(), t.float(), batch, ei)
        b = again(pos.float(), atoms.float(), charges.float(), bonds.float(), t.float(), batch, ei)
    torch.testing.assert_close(a["bonds"], b["bonds"])
    with pytest.raises(GeodiffValueError, match="self_cond"):
        m(pos.float(), atoms.float(), charges.float(), bonds.float(), t.float(), batch, ei, self_cond={})
    with pytest.raises(GeodiffValueError, match="frame_averaging"):
        PlainMoleculeDenoiser(frame_averaging="O")
