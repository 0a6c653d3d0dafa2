"""The references' own protocols as options (issue: paper protocols), each checked against what the reference
code computes, read from its files:

* GeoTDM (hanjq17/GeoTDM ``diffusion/GeoTDM.py``): ``get_named_beta_schedule("linear", T)`` scales the
  betas by 1000 / T; ``p_mean_variance`` with FIXED_LARGE uses beta_t; ``experiments/nbody_sampling.py``
  rebuilds the diffusion with ``sampling_timesteps`` steps and feeds the raw t (``rescale_timesteps=False``).
* DiffusionReg (Jiang-HB/DiffusionReg ``utils/diffusion_scheduler.py``, ``test.py``, ``utils/criterion.py``):
  the test-time cosine schedule and gammas, the loop ``for t in range(n_diff_steps, 1, -1)`` returning the
  last H0, and ``mAP``'s histogram recalls on squared translation errors.
* EQGAT-diff (tuanle618/eqgat-diff ``experiments/molecule_utils.py`` ``Molecule.compute_validity``): one
  fragment, sanitises, no implicit hydrogens.
* Novelty against a hashed set of training SMILES.
"""

import math

import numpy as np
import pytest
import torch

from geodiff.config import build, compose
from geodiff.data.structures import Molecule3D
from geodiff.errors import GeodiffError, GeodiffValueError
from geodiff.metrics.chemistry import molecule_metrics, rdkit_validity, uniqueness_novelty
from geodiff.metrics.novelty import SmilesSet
from geodiff.metrics.pose import reference_recall, summarize_pose_metrics
from geodiff.schedulers import E3DDPMScheduler, SE3DiffusionScheduler, make_alphas_cumprod, rescale
from tests.unit.metrics.test_chemistry import drop_atom, embed
from tests.unit.pipelines.test_registration_pipeline import pipeline as registration_pipeline
from tests.unit.pipelines.test_trajectory_pipeline import batch, pipe


# ------------------------------------------------------------------------------------------------ GeoTDM
def test_rescaled_linear_schedule_is_geotdms():
    sched = E3DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4, beta_end=2e-2)
    short = rescale(sched, 100)
    # get_named_beta_schedule("linear", 100): scale = 1000 / 100, linspace(scale * 1e-4, scale * 0.02, 100)
    expected = np.linspace(10 * 1e-4, 10 * 0.02, 100)
    np.testing.assert_allclose(short.betas.numpy(), expected, rtol=1e-12)
    assert short.config.num_train_timesteps == 100 and sched.config.num_train_timesteps == 1000
    cos = rescale(E3DDPMScheduler(num_train_timesteps=500, beta_schedule="cosine"), 50)
    torch.testing.assert_close(cos.alphas_cumprod, make_alphas_cumprod("cosine", 50))
    with pytest.raises(GeodiffValueError, match="beta_end 2 >= 1"):
        rescale(sched, 10)
    # the ETH-UCY experiment trains on GeoTDM's 100-step schedule (abar_T near 0, not 0.36)
    cfg = compose("train", ["experiment=eth_ucy_geotdm"])
    eth = build("scheduler", "geotdm_ddpm", [f"{k}={v}" for k, v in cfg.scheduler.items() if k != "_target_"])
    assert float(eth.alphas_cumprod[-1]) < 1e-4


def test_fixed_large_noise_is_beta_t(monkeypatch):
    out = {}
    for variance in ("fixed_small", "fixed_large"):
        s = E3DDPMScheduler(num_train_timesteps=20, beta_schedule="linear", variance_type=variance,
                            center_of_mass=False)  # fmt: skip
        x, eps = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64)
        noise = {}
        for fill in (0.0, 1.0):
            monkeypatch.setattr(
                s, "_randn", lambda shape, g, like, f=fill: torch.full(shape, f, dtype=like.dtype)
            )
            noise[fill] = s.step(eps, 10, x).prev_sample
        out[variance] = (noise[1.0] - noise[0.0])[0, 0].item()  # the step's noise standard deviation
    beta = 1 - s.alphas_cumprod[10] / s.alphas_cumprod[9]
    posterior = beta * (1 - s.alphas_cumprod[9]) / (1 - s.alphas_cumprod[10])
    assert out["fixed_large"] == pytest.approx(math.sqrt(beta))  # FIXED_LARGE: betas[t]
    assert out["fixed_small"] == pytest.approx(math.sqrt(posterior))


def test_trajectory_pipeline_reference_sampler_options():
    p, b = pipe(T=50), batch()
    seen = []
    forward = p.model.forward

    def spy(x, t, *args, **kw):
        seen.append(int(torch.as_tensor(t).reshape(-1)[0]))
        return forward(x, t, *args, **kw)

    p.model.forward = spy
    a = p(b, num_samples=2, num_inference_steps=10, seed=0, progress=False, schedule="rescaled").trajectories
    assert seen == list(range(9, -1, -1))  # a fresh 10-step schedule, t fed in 0 .. 9 as the reference does
    seen.clear()
    p(b, num_samples=2, num_inference_steps=10, seed=0, progress=False)
    assert seen[0] == 49 and seen[-1] < 10 and len(seen) == 10  # the default strides the 50-step schedule
    large = p(b, num_samples=2, num_inference_steps=10, seed=0, progress=False, variance_type="fixed_large")
    small = p(b, num_samples=2, num_inference_steps=10, seed=0, progress=False)
    assert torch.isfinite(a).all() and not torch.allclose(large.trajectories, small.trajectories)
    assert p.scheduler.config.variance_type == "fixed_small"  # the call did not change the pipeline
    assert p.sampling_scheduler(variance_type="fixed_large").config.variance_type == "fixed_large"
    with pytest.raises(GeodiffValueError, match="variance_type: a DDPM option"):
        p(
            b,
            num_samples=1,
            num_inference_steps=5,
            sampler="ddim",
            variance_type="fixed_large",
            progress=False,
        )
    with pytest.raises(GeodiffValueError, match="schedule: expected strided or rescaled"):
        p(b, num_samples=1, num_inference_steps=5, schedule="stretched", progress=False)


# ------------------------------------------------------------------------------------------- DiffusionReg
def diffusionreg_schedule(T=5, s=0.008):
    """utils/diffusion_scheduler.py, cosine mode, written out (index 0 is the padding)."""

    def f(t):
        return math.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2

    betas = [0.0] + [min(1 - f(t) / f(t - 1), 0.999) for t in range(1, T + 1)]
    abar = np.cumprod([1 - b for b in betas])
    g0 = [0.0, 0.0] + [betas[t] * math.sqrt(abar[t - 1]) / (1 - abar[t]) for t in range(2, T + 1)]
    g1 = [0.0, 0.0] + [(1 - abar[t - 1]) * math.sqrt(1 - betas[t]) / (1 - abar[t]) for t in range(2, T + 1)]
    return np.array(betas), abar, np.array(g0), np.array(g1)


def test_reference_test_schedule_matches_diffusionreg():
    betas, abar, g0, g1 = diffusionreg_schedule()
    s = registration_pipeline().reference_scheduler(5)
    assert (s.config.sigma_r, s.config.sigma_t) == (0.1, 0.01)
    np.testing.assert_allclose(s.alphas_cumprod.numpy(), abar[1:], rtol=1e-6)  # geodiff index = t - 1
    for t in range(2, 6):  # the posterior-mean gammas of every step the reference runs
        c0, c1, var = s._posterior(torch.tensor(t - 1), torch.tensor(t - 2), lambda v: v)
        assert float(c0) == pytest.approx(g0[t], rel=1e-6) and float(c1) == pytest.approx(g1[t], rel=1e-6)
        assert float(var) == pytest.approx((1 - abar[t - 1]) / (1 - abar[t]) * betas[t], rel=1e-6)


def test_reference_inference_loop():
    p = registration_pipeline()
    calls = []
    match = p.model.match

    def spy(feats, s, t, h, tt):
        out = match(feats, s, t, h, tt)
        calls.append((int(tt[0]), out["pose"].clone()))
        return out

    p.model.match = spy
    rng = np.random.default_rng(0)
    src = rng.normal(size=(128, 3))
    tgt = src @ np.array([[0, -1, 0], [1, 0, 0], [0, 0, 1.0]]).T + 0.1
    pose = p(src, tgt, num_inference_steps=5, inference="reference", progress=False).poses[0]
    # four surrogate calls (t = 5 .. 2), each at the training step at the same point of the (cosine) schedule,
    # and the returned pose is the last H0 estimate (no refinement)
    assert [k for k, _ in calls] == [199, 159, 119, 79]
    train, ref = p.scheduler.alphas_cumprod, p.reference_scheduler(5).alphas_cumprod
    torch.testing.assert_close(train[[159, 119, 79]], ref[[3, 2, 1]])  # the same abar
    assert np.isfinite(pose).all() and pose.shape == (4, 4)
    calls.clear()
    p(src, tgt, num_inference_steps=5, progress=False)
    assert len(calls) == 5 + 3  # geodiff's loop: 5 steps, then 3 refinement passes
    with pytest.raises(GeodiffValueError, match="inference=reference"):
        p(src, tgt, num_inference_steps=1, inference="reference", progress=False)
    with pytest.raises(GeodiffValueError, match="inference: expected geodiff or reference"):
        p(src, tgt, inference="paper", progress=False)


def test_reference_translation_recall_is_on_squared_cm():
    # utils/criterion.py: np.histogram(errors, [0, 1, 2, 5]) then cumsum: [0,1), [1,2), [2,5] (closed)
    e = np.array([0.5, 1.0, 1.5, 4.9, 5.0, 6.0])
    np.testing.assert_allclose(reference_recall(e, (1, 2, 5)), [100 / 6, 300 / 6, 500 / 6])
    per = {"rotation_error_deg": np.zeros(4), "translation_error_cm": np.array([0.5, 1.2, 1.6, 2.0]),
           "translation_error": np.zeros(4), "add_over_diameter": np.zeros(4),
           "add_s_over_diameter": np.zeros(4)}  # fmt: skip
    s = summarize_pose_metrics(per)
    assert [s[f"translation_recall_{k}cm"] for k in (1, 2, 5)] == [25.0, 75.0, 100.0]
    # squared: 0.25, 1.44, 2.56, 4.0 -> < 1: one; < 2: two; <= 5: all four
    assert [s[f"translation_recall_{k}cm_squared"] for k in (1, 2, 5)] == [25.0, 50.0, 100.0]


# ----------------------------------------------------------------------------------------------- EQGAT-diff
def test_validity_without_implicit_hydrogens():
    ethanol = embed("CCO")
    h = int(np.flatnonzero(ethanol.atomic_numbers == 1)[-1])
    radical = drop_atom(ethanol, h)  # sanitises (RDKit adds the missing H implicitly), one fragment
    pair = embed("C.O")  # two fragments
    v = rdkit_validity([ethanol, radical, pair])
    assert v["valid"].tolist() == [True, True, True]
    assert v["implicit_h"].tolist() == [False, True, False]
    assert v["connected_validity"] == pytest.approx(2 / 3)
    assert v["validity_no_implicit_h"] == pytest.approx(1 / 3)
    assert molecule_metrics([ethanol, radical])["validity_no_implicit_h"] == 0.5


# --------------------------------------------------------------------------------------------------- novelty
def test_hashed_training_smiles(tmp_path):
    train = ["CCO", "c1ccccc1", "CC(=O)O"]
    s = SmilesSet.from_smiles(train, source="three")
    assert len(s) == 3 and "CCO" in s and "CCN" not in s
    assert s.novel(["CCO", "CCN", "c1ccccc1"]).tolist() == [False, True, False]
    assert s.novelty(["CCO", "CCN", "CCN"]) == 0.5  # over distinct SMILES
    generated = ["CCO", "CCN", "CCCl", "CCO"]
    assert uniqueness_novelty(generated, s) == uniqueness_novelty(generated, set(train))
    back = SmilesSet.load(s.save(tmp_path / "t.npz"))
    np.testing.assert_array_equal(back.hashes, s.hashes)
    assert back.source == "three" and SmilesSet([]).novelty(["C"]) == 1.0
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(GeodiffError, match="bad.npz"):
        SmilesSet.load(tmp_path / "bad.npz")
    np.savez(tmp_path / "wrong.npz", sha256_64=np.zeros(3, np.float32))
    with pytest.raises(GeodiffError, match="1-D uint64"):
        SmilesSet.load(tmp_path / "wrong.npz")
    # from molecules: the canonical SMILES of what sanitises, as generated molecules' SMILES are made
    mols = [embed("CCO"), embed("c1ccccc1", kekulize=True)]
    ms = SmilesSet.from_molecules(mols)
    assert ms.novelty(rdkit_validity([embed("CCO"), embed("c1ccccc1")])["smiles"]) == 0.0
    assert isinstance(mols[0], Molecule3D)


def test_registration_squared_recall_in_benchmark_report():
    from geodiff.pipelines.registration_benchmark import evaluate_registration
    from tests.unit.pipelines.test_registration_pipeline import pairs

    res = evaluate_registration(pairs(2), ["icp_point"], progress=False)["icp_point"]["summary"]
    assert {"translation_recall_1cm_squared", "translation_recall_5cm_squared"} <= set(res)
    with pytest.raises(GeodiffError, match="one_shot has no reference test loop"):
        evaluate_registration(pairs(2), ["one_shot"], registration_pipeline(), progress=False,
                              inference="reference")  # fmt: skip


def test_se3_scheduler_kept_for_training():
    # the reference test loop builds its own scheduler; the pipeline's training scheduler is untouched
    p = registration_pipeline()
    before = dict(p.scheduler.config)
    p(np.random.default_rng(1).normal(size=(64, 3)), np.random.default_rng(2).normal(size=(64, 3)),
      num_inference_steps=3, inference="reference", progress=False)  # fmt: skip
    assert dict(p.scheduler.config) == before and isinstance(p.scheduler, SE3DiffusionScheduler)


def test_reference_loss_normalisation(qm9_small):
    from geodiff.data.molecules import collate_molecules
    from geodiff.models.eqgat_diff import EQGATDiffDenoiser
    from geodiff.training.molecules import eqgat_diff_loss
    from tests.unit.training.test_molecule_training import make_schedulers

    sch = make_schedulers(qm9_small.statistics(), T=50)
    torch.manual_seed(0)
    model = EQGATDiffDenoiser(s_dim=16, v_dim=4, e_dim=4, num_layers=1)

    def both(mols, t):
        batch = collate_molecules(mols)
        return [eqgat_diff_loss(model, batch, sch, t=t, generator=torch.Generator().manual_seed(1),
                                normalisation=n) for n in ("geodiff", "reference")]  # fmt: skip

    t = torch.tensor([20])
    ours, ref = both([qm9_small[0]], t)  # one graph: the components are that graph's terms
    w = float(sch.pos.loss_weight(t))
    c = {k: float(ours[k]) for k in ("pos", "atoms", "charges", "bonds")}
    assert ours["loss"].item() == pytest.approx(
        w * (3 * c["pos"] + 0.4 * c["atoms"] + 2 * c["bonds"] + c["charges"])
    )
    # experiments/losses.py: MSE averaged over xyz (pos / 3), 0.5 x bond CE, lc weights 3 / 0.4 / 2 / 1
    assert ref["loss"].item() == pytest.approx(w * (c["pos"] + 0.4 * c["atoms"] + c["bonds"] + c["charges"]))
    ours3, ref3 = both([qm9_small[i] for i in range(3)], torch.tensor([20, 20, 20]))
    per = {k: float(ours3[k]) for k in c}  # with one t for all graphs the weights are equal: sum = 3 x mean
    assert ref3["loss"].item() == pytest.approx(
        3 * w * (per["pos"] + 0.4 * per["atoms"] + per["bonds"] + per["charges"])
    )
    with pytest.raises(GeodiffError, match="loss_normalisation"):
        eqgat_diff_loss(model, collate_molecules([qm9_small[0]]), sch, t=t, normalisation="paper")


# ------------------------------------------------------------------------- progress on long steps (hardening)
class _Terminal:
    """A stderr stand-in that says it is a terminal."""

    def __init__(self):
        self.text = ""

    def write(self, s):
        self.text += s

    def flush(self):
        pass

    def isatty(self):
        return True


def test_progress_bars_show_on_terminals_for_long_loops_only():
    import io

    from geodiff.io import PROGRESS_MIN_ITEMS, progress

    term = _Terminal()
    assert sum(progress(range(PROGRESS_MIN_ITEMS), desc="RDKit validity", file=term)) == sum(
        range(PROGRESS_MIN_ITEMS)
    )
    assert "RDKit validity" in term.text  # a long loop on a terminal shows its bar
    short = _Terminal()
    list(progress(range(10), desc="short", file=short))
    assert short.text == ""  # a short loop shows none
    log = io.StringIO()  # not a terminal (a log file, captured output): never a bar
    list(progress(range(PROGRESS_MIN_ITEMS), desc="quiet", file=log))
    assert log.getvalue() == ""
    forced = _Terminal()
    list(progress(range(3), desc="ICP", show=True, file=forced))
    assert "ICP" in forced.text


def test_k_means_clustering_of_samples_as_geotdm():
    """experiments/eth_train_new.py: KMeans(20) on the K final positions, then per centre the sample whose
    final position is nearest; min ADE/FDE over those."""
    from geodiff.metrics.trajectories import cluster_samples

    g = torch.Generator().manual_seed(0)
    # two agents; their 60 samples end in 3 well-separated groups
    ends = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]], dtype=torch.float64)
    group = torch.arange(60) % 3
    pred = torch.zeros(60, 2, 4, 2, dtype=torch.float64)
    pred[:, :, -1] = ends[group][:, None] + 0.1 * torch.randn(60, 2, 2, generator=g, dtype=torch.float64)
    pred[:, :, :-1] = pred[:, :, -1:] * torch.linspace(0.25, 0.75, 3, dtype=torch.float64).view(1, 1, 3, 1)
    kept = cluster_samples(pred, 3)
    assert kept.shape == (3, 2, 4, 2)
    for node in range(2):  # one sample from each group, each a real sample of that node
        finals = kept[:, node, -1]
        assert sorted(int(torch.cdist(f[None], ends).argmin()) for f in finals) == [0, 1, 2]
        assert all(any(torch.equal(k, p) for p in pred[:, node]) for k in kept[:, node])
    torch.testing.assert_close(cluster_samples(pred, 3), kept)  # seeded
    with pytest.raises(GeodiffValueError, match="cluster"):
        cluster_samples(pred, 61)


def test_input_scale_forecasts_from_shrunk_positions_and_scales_back():
    import dataclasses

    p, b = pipe(T=30), batch()
    kw = {"num_samples": 2, "num_inference_steps": 5, "seed": 3, "progress": False}
    scaled = p(b, input_scale=1.4, **kw)
    by_hand = p(dataclasses.replace(b, x=b.x / 1.4), **kw).trajectories * 1.4
    torch.testing.assert_close(scaled.trajectories, by_hand)
    torch.testing.assert_close(scaled.systems.x, b.x)  # the systems keep their units
    with pytest.raises(GeodiffValueError, match="input_scale"):
        p(b, input_scale=0.0, **kw)
