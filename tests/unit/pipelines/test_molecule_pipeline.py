"""Molecule sampling pipeline on an exported (untrained, tiny) model: shapes, sizes, seeds, SDF, grid."""

import json

import numpy as np
import pytest
import torch
from rdkit import Chem

from geodiff.config import build
from geodiff.errors import GeodiffError, GeodiffValueError
from geodiff.models.eqgat_diff import EQGATDiffDenoiser
from geodiff.pipelines.molecules import MoleculeDiffusionPipeline, draw_grid, write_sdf
from geodiff.schedulers import CategoricalFlowMatchScheduler, E3FlowMatchScheduler, MoleculeSchedulers
from geodiff.training.molecules import MoleculeDiffusionModule


@pytest.fixture(scope="module")
def export_dir(qm9_small, tmp_path_factory):
    torch.manual_seed(0)
    module = MoleculeDiffusionModule(
        EQGATDiffDenoiser(s_dim=16, v_dim=4, e_dim=4, num_layers=1),
        scheduler=build("scheduler", "eqgat_diff", ["pos.num_train_timesteps=50"]),
    )
    module.set_statistics(qm9_small.statistics(), qm9_small.vocab)
    return module.export_pretrained(tmp_path_factory.mktemp("export"))


def test_export_layout_is_safetensors_and_json(export_dir):
    assert (export_dir / "model" / "diffusion_pytorch_model.safetensors").is_file()
    assert not list(export_dir.rglob("*.bin")) and not list(export_dir.rglob("*.ckpt"))
    meta = json.loads((export_dir / "molecules.json").read_text())
    assert meta["family"] == "molecules" and meta["vocab"]["atoms"] == ["H", "C", "N", "O", "F"]


def test_sampling_sizes_seed_and_outputs(export_dir, qm9_small, tmp_path):
    pipe = MoleculeDiffusionPipeline.from_pretrained(export_dir)
    recs = pipe(num_samples=7, sampler="ddim", num_inference_steps=5, batch_size=3, seed=3, progress=False)
    assert len(recs) == 7
    assert {r.num_atoms for r in recs} <= set(qm9_small.statistics().num_atoms_hist)
    for r in recs:
        assert r.pos.shape == (r.num_atoms, 3) and np.isfinite(r.pos).all()
        assert set(r.atomic_numbers.tolist()) <= {1, 6, 7, 8, 9}
        assert bool((r.bonds[:, 0] < r.bonds[:, 1]).all()) and bool((r.bonds[:, 2] > 0).all())
    again = pipe(num_samples=7, sampler="ddim", num_inference_steps=5, batch_size=3, seed=3, progress=False)
    assert all(
        np.array_equal(a.pos, b.pos) and np.array_equal(a.atomic_numbers, b.atomic_numbers)
        for a, b in zip(recs, again, strict=True)
    )
    # last_step="argmax" follows the same trajectory up to the classes of the last step (in one batch: the
    # last step draws no random numbers, so a later batch would start from other noise)
    kw = dict(num_samples=7, sampler="ddim", num_inference_steps=5, batch_size=7, seed=3, progress=False)
    one, arg = (pipe(**kw, last_step=m) for m in ("sample", "argmax"))
    assert all(np.array_equal(a.pos, b.pos) for a, b in zip(one, arg, strict=True))
    fixed = pipe(num_samples=2, num_atoms=9, num_inference_steps=3, progress=False)
    assert [r.num_atoms for r in fixed] == [9, 9]
    write_sdf(recs.molecules, tmp_path / "m.sdf")
    mols = list(Chem.SDMolSupplier(str(tmp_path / "m.sdf"), removeHs=False, sanitize=False))
    assert [m.GetNumAtoms() for m in mols] == [r.num_atoms for r in recs]
    draw_grid(recs.molecules, tmp_path / "m.png")
    assert (tmp_path / "m.png").read_bytes()[:4] == b"\x89PNG"


def test_bad_requests(export_dir, tmp_path):
    pipe = MoleculeDiffusionPipeline.from_pretrained(export_dir)
    with pytest.raises(GeodiffValueError, match="num_samples"):
        pipe(num_samples=0)
    with pytest.raises(GeodiffValueError, match="sampler"):
        pipe(num_samples=1, sampler="euler")
    with pytest.raises(GeodiffValueError, match="num_atoms"):
        pipe(num_samples=2, num_atoms=[3, 4, 5])
    with pytest.raises(GeodiffValueError, match="last_step"):
        pipe(num_samples=1, last_step="mode")
    with pytest.raises(GeodiffError, match="not a molecule checkpoint"):
        MoleculeDiffusionPipeline.from_pretrained(tmp_path)


def test_warm_start_from_export(export_dir):
    from geodiff.errors import GeodiffError

    model = EQGATDiffDenoiser(s_dim=16, v_dim=4, e_dim=4, num_layers=1)
    module = MoleculeDiffusionModule(model, init_from=str(export_dir))
    saved = EQGATDiffDenoiser.from_pretrained(export_dir / "model")
    for (k, a), b in zip(module.model.state_dict().items(), saved.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    assert torch.equal(next(module.ema.module.parameters()), next(saved.parameters()))
    with pytest.raises(GeodiffError, match="another architecture"):
        other = EQGATDiffDenoiser(s_dim=8, v_dim=4, e_dim=4, num_layers=1)
        MoleculeDiffusionModule(other, init_from=str(export_dir))


def test_deeper_warm_start_from_export(export_dir, capsys):
    """``module.init_from`` with more ``model.num_layers`` than the export: the exported layers first, the new
    one on top as the identity (said on one line); another scalar width, or an edge width that is not a whole
    multiple of the export's, is still an error."""
    from geodiff.errors import GeodiffError

    module = MoleculeDiffusionModule(EQGATDiffDenoiser(s_dim=16, v_dim=4, e_dim=4, num_layers=2),
                                     init_from=str(export_dir))  # fmt: skip
    assert "1 new layer(s) on top starting as the identity" in capsys.readouterr().out
    saved = EQGATDiffDenoiser.from_pretrained(export_dir / "model")
    mine = module.model.state_dict()
    gate = "layers.0.gated.mlp.2."  # the export's last layer, now a middle one: its vector gate starts closed
    for k, v in saved.state_dict().items():
        assert torch.equal(mine[k][: len(v)], v), k
        if k.startswith(gate):
            assert float(mine[k][len(v) :].abs().max()) == 0.0
    assert float(module.model.layers[1].w_s.weight.abs().max()) == 0.0
    assert torch.equal(module.ema.module.layers[1].w_s.weight, module.model.layers[1].w_s.weight)
    with pytest.raises(GeodiffError, match="another architecture"):
        MoleculeDiffusionModule(EQGATDiffDenoiser(s_dim=32, v_dim=4, e_dim=4, num_layers=2),
                                init_from=str(export_dir))  # fmt: skip
    with pytest.raises(GeodiffError, match="init_from: .*whole multiple"):
        MoleculeDiffusionModule(EQGATDiffDenoiser(s_dim=16, v_dim=4, e_dim=6, num_layers=2),
                                init_from=str(export_dir))  # fmt: skip


def test_wider_warm_start_from_export(export_dir, capsys):
    """``module.init_from`` with twice the export's ``model.e_dim`` (and one more layer): the edge channels
    are copied (said on one line); the model and its EMA start with the export's weights split over the
    copies."""
    module = MoleculeDiffusionModule(EQGATDiffDenoiser(s_dim=16, v_dim=4, e_dim=8, num_layers=2),
                                     init_from=str(export_dir))  # fmt: skip
    said = capsys.readouterr().out
    assert "1 new layer(s) on top" in said and "each of its 4 edge channels copied 2 times" in said
    saved = EQGATDiffDenoiser.from_pretrained(export_dir / "model")
    w, w0 = module.model.edge_embed.weight, saved.edge_embed.weight
    assert torch.equal(w[:4], w0) and torch.equal(w[4:], w0)
    mixed = module.model.layers[0].edge_mlp[0].weight[:, -8:]
    torch.testing.assert_close(mixed[:, :4] + mixed[:, 4:], saved.layers[0].edge_mlp[0].weight[:, -4:])
    assert torch.equal(module.ema.module.bond_head[0].weight, module.model.bond_head[0].weight)


def test_more_steps_than_training_refine_the_same_schedules(export_dir):
    pipe = MoleculeDiffusionPipeline.from_pretrained(export_dir)  # T = 50, cosine schedules
    fine = pipe._refined(100)
    for name in ("pos", "atoms", "charges", "bonds"):
        coarse, refined = getattr(pipe.schedulers, name), getattr(fine, name)
        assert type(refined) is type(coarse) and refined.config.num_train_timesteps == 100
        assert {k: v for k, v in refined.config.items() if k != "num_train_timesteps"} == {
            k: v for k, v in coarse.config.items() if k != "num_train_timesteps"
        }
        # step 2t+1 of 100 is step t of 50: the same noise level (but for the last, where beta is clipped)
        assert torch.allclose(
            refined.alphas_cumprod[1::2][:-1], coarse.alphas_cumprod[:-1], rtol=1e-12, atol=0
        )
    seen = []
    hook = pipe.model.register_forward_pre_hook(lambda _m, args: seen.append(float(args[4][0])))
    try:
        for sampler in ("ddpm", "ddim"):
            seen.clear()
            recs = pipe(num_samples=3, sampler=sampler, num_inference_steps=100, batch_size=3, seed=1,
                        progress=False)  # fmt: skip
            assert len(recs) == 3 and all(np.isfinite(r.pos).all() for r in recs)
            # the denoiser is asked at times k/100 (k = 100 .. 1): the same range (0, 1], twice as finely
            assert seen == pytest.approx([k / 100 for k in range(100, 0, -1)], rel=1e-6)
    finally:
        hook.remove()


def test_refined_grid_needs_continuous_schedules(export_dir):
    pipe = MoleculeDiffusionPipeline.from_pretrained(export_dir)
    for bad in (0, -5, 2.5, True):
        with pytest.raises(GeodiffValueError, match="num_inference_steps: must be a positive integer"):
            pipe(num_samples=1, num_inference_steps=bad, progress=False)
    cfg = pipe.schedulers.bonds.config
    pipe.schedulers.bonds = type(pipe.schedulers.bonds).from_config(cfg, beta_schedule="linear")
    with pytest.raises(GeodiffValueError, match="continuous time; the bonds schedule is linear"):
        pipe(num_samples=1, num_inference_steps=51, progress=False)
    assert len(pipe(num_samples=1, num_inference_steps=50, progress=False)) == 1  # up to T: no refinement


def test_the_four_schedulers_must_share_one_time_grid(export_dir):
    """The sampling loop steps atom types, charges and bonds at the positions' time steps: schedulers on
    another grid (another T, or a flow scheduler with another ``time_shift``) are refused in one line
    before anything is sampled."""
    pipe = MoleculeDiffusionPipeline.from_pretrained(export_dir)  # T = 50
    seen = []
    hook = pipe.model.register_forward_pre_hook(lambda *_: seen.append(1))
    try:
        cfg = pipe.schedulers.bonds.config
        pipe.schedulers.bonds = type(pipe.schedulers.bonds).from_config(cfg, num_train_timesteps=40)
        with pytest.raises(GeodiffValueError, match="the bonds scheduler.s. step on another time grid") as e:
            pipe(num_samples=1, num_inference_steps=10, progress=False)
        assert "\n" not in str(e.value) and not seen
    finally:
        hook.remove()
    flow = MoleculeSchedulers(
        E3FlowMatchScheduler(num_train_timesteps=50, time_shift=3.0),
        *(
            CategoricalFlowMatchScheduler(
                num_classes=k, num_train_timesteps=50, prior_type="uniform", time_shift=s
            )
            for k, s in ((5, 3.0), (3, 1.0), (5, 3.0))
        ),
    )
    with pytest.raises(GeodiffValueError, match="the charges scheduler.s. step on another time grid"):
        MoleculeDiffusionPipeline._set_one_grid(flow, 10)
    flow.charges = CategoricalFlowMatchScheduler(
        num_classes=3, num_train_timesteps=50, prior_type="uniform", time_shift=3.0
    )
    MoleculeDiffusionPipeline._set_one_grid(flow, 10)  # one grid: accepted, and set to 10 steps
    assert all(len(getattr(flow, n).timesteps) == 10 for n in MoleculeSchedulers.PARTS)
    # a call's time_shift moves all four grids together (flow exports only)
    shifted = MoleculeDiffusionPipeline._shifted(flow, 0.5)
    assert {getattr(shifted, n).config.time_shift for n in MoleculeSchedulers.PARTS} == {0.5}
    MoleculeDiffusionPipeline._set_one_grid(shifted, 10)
    for bad, said in (
        (True, "expected a number > 0"),
        ("0.5", "expected a number > 0"),
        (-1.0, "must be > 0"),
    ):
        with pytest.raises(GeodiffValueError, match=said):
            MoleculeDiffusionPipeline._shifted(flow, bad)
    with pytest.raises(GeodiffValueError, match="time_shift: a flow-matching option.*E3DDPMScheduler"):
        MoleculeDiffusionPipeline.from_pretrained(export_dir)(num_samples=1, time_shift=0.5, progress=False)


def test_self_conditioned_sampling_feeds_back_the_previous_prediction(export_dir, capsys):
    """``module.init_from`` with ``model.self_condition=true`` adds the inputs (said on one line) and starts
    from the export's function; sampling gives the denoiser nothing on the first step and its previous
    prediction on every later one; seeded runs repeat."""
    model = EQGATDiffDenoiser(s_dim=16, v_dim=4, e_dim=4, num_layers=1, self_condition=True)
    module = MoleculeDiffusionModule(model, init_from=str(export_dir))
    assert "self-conditioning inputs added (starting at zero)" in capsys.readouterr().out
    assert float(module.model.sc_edge.weight.abs().max()) == 0.0
    with torch.no_grad():  # as after training
        for prm in (module.model.sc_node.weight, module.model.sc_edge.weight, module.model.sc_vec):
            prm.normal_(0.0, 0.3)
    plain = MoleculeDiffusionPipeline.from_pretrained(export_dir)
    pipe = MoleculeDiffusionPipeline(module.model.eval(), plain.schedulers, plain.vocab, plain.stats)
    calls = []
    hook = pipe.model.register_forward_hook(
        lambda _m, args, kwargs, out: calls.append((kwargs.get("self_cond"), out)), with_kwargs=True
    )
    try:
        for sampler in ("ddpm", "ddim"):
            calls.clear()
            recs = pipe(num_samples=3, sampler=sampler, num_inference_steps=6, batch_size=3, seed=2,
                        progress=False)  # fmt: skip
            assert len(recs) == 3 and len(calls) == 6 and calls[0][0] is None
            for (_, prev), (sc, _) in zip(calls[:-1], calls[1:], strict=True):
                expect = EQGATDiffDenoiser.self_cond_from(prev)
                assert all(torch.equal(sc[k], expect[k]) for k in expect)
        again = pipe(
            num_samples=3, sampler="ddim", num_inference_steps=6, batch_size=3, seed=2, progress=False
        )
        assert all(np.array_equal(a.pos, b.pos) for a, b in zip(recs, again, strict=True))
    finally:
        hook.remove()
