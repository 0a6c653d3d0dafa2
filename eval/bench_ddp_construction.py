"""Benchmark: the single-process cost of building denoisers for DDP (no unused parameters by construction).

    OMP_NUM_THREADS=2 .venv/bin/python eval/bench_ddp_construction.py [--qm9 PATH] [--reps 15] [--json F]

What changed for DDP, and what this times (forward + backward of one training loss, the step minus Adam),
against a baseline run in the same process, built as before the change:

1. EQGAT-diff (the CPU model's size: 128 / 32 / 16 channels, 6 layers, self-conditioning) on 64 real QM9
   molecules: the last layer has no vector gate (baseline: it has one, as before), and without a previous
   prediction the self-conditioning inputs run times zero (baseline: they are skipped). The loss is the
   EQGAT-diff loss with self-conditioning, whose coin decides per batch; both models see the same batches
   and seeds, so the same coins.
2. GeoTDM (the CPU model's size: 64 channels, 3 EGTN layers) on 128 charged-particle systems: the last block
   of the denoiser updates coordinates only (baseline: it also updates features nobody reads).

Timings alternate baseline / new per repetition; the median ratio is printed (new / baseline: < 1 is
faster). The two constructions compute the same outputs (checked and printed).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from geodiff.config import build
from geodiff.data.molecules import MoleculeDataset, collate_molecules
from geodiff.data.nbody import simulate
from geodiff.data.trajectories import collate_trajectories, load_nbody_npz, save_nbody_npz
from geodiff.io import device_description, write_json
from geodiff.models.eqgat_diff import EQGATDiffDenoiser
from geodiff.models.geotdm import GeoTDMDenoiser
from geodiff.nn.egtn import EGTNBlock
from geodiff.nn.eqgat import EQGATLayer
from geodiff.training.molecules import eqgat_diff_loss, with_data
from geodiff.training.trajectories import for_model, trajectory_loss

ROOT = Path(__file__).resolve().parents[1]


def old_eqgat(model: EQGATDiffDenoiser) -> EQGATDiffDenoiser:
    """``model`` as built before: the last layer with its vector gate, self-conditioning skipped when there
    is no previous prediction (the shared weights copied, so both compute the same outputs)."""
    c = model.config
    old = EQGATDiffDenoiser(**{k: v for k, v in c.items() if not k.startswith("_")})
    old.load_state_dict(model.state_dict(), strict=False)
    last = EQGATLayer(c.s_dim, c.v_dim, c.e_dim, rbf_dim=c.rbf_dim, position_update=c.position_update)
    state = model.layers[-1].state_dict()
    w, b = state["gated.mlp.2.weight"], state["gated.mlp.2.bias"]
    state["gated.mlp.2.weight"] = torch.cat([w, torch.randn(c.v_dim, w.shape[1])])
    state["gated.mlp.2.bias"] = torch.cat([b, torch.randn(c.v_dim)])
    state["gated.w2.weight"] = torch.randn(c.v_dim, c.v_dim)
    last.load_state_dict(state)
    old.layers[-1] = last
    add = old._add_self_cond
    old._add_self_cond = lambda sc, s, v, e, *rest: (s, v, e) if sc is None else add(sc, s, v, e, *rest)
    return old


def old_geotdm(model: GeoTDMDenoiser) -> GeoTDMDenoiser:
    """``model`` as built before: the denoiser's last block also updates features."""
    c = model.config
    old = GeoTDMDenoiser(**{k: v for k, v in c.items() if not k.startswith("_")})
    old.load_state_dict(model.state_dict(), strict=False)
    full = EGTNBlock(c.hidden, c.edge_dim, c.heads)
    full.load_state_dict(model.net.blocks[-1].state_dict(), strict=False)
    old.net.blocks[-1] = full
    return old


def time_pair(base_step, new_step, reps: int) -> dict:
    for step in (base_step, new_step):  # warm-up
        step()
    base, new = [], []
    for _ in range(reps):
        for step, out in ((base_step, base), (new_step, new)):
            t0 = time.perf_counter()
            step()
            out.append(time.perf_counter() - t0)
    ratios = [n / b for n, b in zip(new, base, strict=True)]
    return {"baseline_ms": 1e3 * statistics.median(base), "new_ms": 1e3 * statistics.median(new),
            "ratio_median": statistics.median(ratios), "ratio_min": min(ratios),
            "ratio_max": max(ratios)}  # fmt: skip


def bench_molecules(qm9: Path, reps: int) -> dict:
    ds = MoleculeDataset.from_qm9_npz(qm9, cache_dir=ROOT / ".cache" / "geodiff", limit=700, progress=False)
    sch = with_data(build("scheduler", "eqgat_diff"), ds.statistics())
    torch.manual_seed(0)
    new = EQGATDiffDenoiser(s_dim=128, v_dim=32, e_dim=16, num_layers=6, self_condition=True)
    with torch.no_grad():  # trained-like self-conditioning weights (they start at zero)
        for p in (new.sc_node.weight, new.sc_edge.weight, new.sc_vec):
            p.normal_(0, 0.05)
    old = old_eqgat(new)
    batches = [collate_molecules([ds[i] for i in range(k * 64, (k + 1) * 64)]) for k in range(10)]
    b0 = batches[0]
    same = [eqgat_diff_loss(m, b0, sch, generator=torch.Generator().manual_seed(1))["loss"].item()
            for m in (old, new)]  # fmt: skip

    def step(model):
        state = {"k": 0}  # each model sees batch r (and its seed) at repetition r

        def run():
            k = state["k"] = (state["k"] + 1) % len(batches)
            model.zero_grad(set_to_none=True)
            loss = eqgat_diff_loss(model, batches[k], sch, generator=torch.Generator().manual_seed(k))["loss"]
            loss.backward()

        return run

    res = time_pair(step(old), step(new), reps)
    res.update(loss_baseline=same[0], loss_new=same[1], molecules_per_batch=64)
    return res


def bench_trajectories(reps: int, tmp: Path) -> dict:
    sim = simulate(128, "charged", seed=0, progress=False)
    path = save_nbody_npz(sim, tmp / "bench_nbody.npz", "charged")
    ds = load_nbody_npz(path, 10, 20)
    b = collate_trajectories(ds.samples)
    torch.manual_seed(0)
    new = GeoTDMDenoiser(hidden=64, num_layers=3, prior_layers=1, num_cond=10, num_target=20,
                         prediction="sample")  # fmt: skip
    old = old_geotdm(new)
    sched = for_model(build("scheduler", "geotdm_ddpm"), new)
    same = [trajectory_loss(m, b, sched, torch.Generator().manual_seed(1)).item() for m in (old, new)]

    def step(model):
        def run():
            model.zero_grad(set_to_none=True)
            trajectory_loss(model, b, sched, torch.Generator().manual_seed(2)).backward()

        return run

    res = time_pair(step(old), step(new), reps)
    res.update(loss_baseline=same[0], loss_new=same[1], systems_per_batch=128)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--qm9", default=str(ROOT.parent / "shared" / "data" / "qm9" / "test.npz"))
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    out = {"device": device_description("cpu"), "torch": torch.__version__, "reps": args.reps}
    if Path(args.qm9).is_file():
        out["eqgat_diff"] = bench_molecules(Path(args.qm9), args.reps)
    tmp = ROOT / ".cache" / "geodiff"
    tmp.mkdir(parents=True, exist_ok=True)
    out["geotdm"] = bench_trajectories(args.reps, tmp)
    print(f"{out['device']}, torch {out['torch']}; forward + backward of one training loss, median of "
          f"{args.reps} alternating repetitions")  # fmt: skip
    for name, r in out.items():
        if isinstance(r, dict):
            print(f"  {name:10s} baseline {r['baseline_ms']:8.1f} ms   new {r['new_ms']:8.1f} ms   "
                  f"new/baseline {r['ratio_median']:.3f} (range {r['ratio_min']:.3f}-{r['ratio_max']:.3f})   "
                  f"same loss: {r['loss_baseline']:.6f} / {r['loss_new']:.6f}")  # fmt: skip
    if args.json:
        write_json(args.json, out)
        print(f"JSON {args.json}")


if __name__ == "__main__":
    main()
