"""Benchmark: EQGAT-diff denoiser training throughput (forward + backward, molecules/s).

    .venv/bin/python eval/bench_molecules.py [--batch 64] [--steps 5] [--small] [--sample-n 32] [--compile]
        [--qm9 ../shared/data/qm9/test.npz]

Uses the first real QM9 molecules (EDM npz layout, bonds perceived with RDKit) at paper size (256/64/32
channels, 7 layers) unless --small; prints the machine, torch version and molecules/s for a training
step and for sampling at each scheduler's default steps (DDPM 500, DDIM 50 and flow matching's Euler 50 on
the same weights, --sample-n molecules; --sample-n 0 skips it), and the cost of flow matching's equivariant
OT pairing of noise and molecules per training batch (``module.ot_alignment``; more in eval/bench_flow.py).

The training step is also timed, in the same process and on the same weights, with the textbook EQGAT
layer as the baseline: the edge MLPs' first linear layers applied to the concatenated per-edge input
([s_i, s_j, rbf, d, p_i.p_j, e_ij]), rows gathered with ``x[index]`` (whose backward is an accumulating
``index_put_``) and distances recomputed in every layer. geodiff applies the node blocks of those layers
per node and gathers the products (``geodiff.nn.eqgat.pair_linear``), gathers with ``index_select`` and hands
each layer the geometry its predecessor computed. Both give the same numbers (checked and printed).
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import statistics
import time
from pathlib import Path

import torch
from bench_flow import ot_pairing_seconds  # the same OT timing as eval/bench_flow.py

from geodiff.config import build
from geodiff.data.molecules import MoleculeDataset, collate_molecules
from geodiff.models.eqgat_diff import EQGATDiffDenoiser
from geodiff.nn.eqgat import EQGATLayer
from geodiff.nn.scatter import scatter_mean, scatter_softmax, scatter_sum
from geodiff.schedulers import (
    CategoricalD3PMScheduler,
    E3DDPMScheduler,
    MoleculeSchedulers,  # noqa: E402
)
from geodiff.training.molecules import eqgat_diff_loss, with_data

SMILES = [
    "CCO",
    "CC(=O)N",
    "c1ccccc1",
    "CC#N",
    "OCC(F)F",
    "CC(C)O",
    "C1CC1N",
    "O=CC=O",
    "CN(C)C=O",
    "c1ccncc1",
    "CC1=CC=CO1",
    "OC1CCC1",
    "NC(=O)C#C",
    "CCOC(C)=O",
    "Cc1ncco1",
    "FC(F)(F)CO",
]


def rdkit_molecules(n: int) -> MoleculeDataset:
    from rdkit import Chem
    from rdkit.Chem import AllChem

    from geodiff.data.molecules import MoleculeVocabulary, mol_to_record

    records = []
    for k in range(n):
        mol = Chem.AddHs(Chem.MolFromSmiles(SMILES[k % len(SMILES)]))
        AllChem.EmbedMolecule(mol, randomSeed=k)
        records.append(mol_to_record(mol, MoleculeVocabulary(), name=f"rdkit_{k}"))
    return MoleculeDataset.from_records(records, MoleculeVocabulary())


def _textbook_layer(self: EQGATLayer, s, v, p, e, edge_index, geom=None):
    """The baseline: the EQGAT layer, edge MLPs on concatenated per-edge inputs (see the docstring)."""
    n = s.shape[0]
    j, i = edge_index

    def geometry(p):
        r = p[i] - p[j]
        d = (r.pow(2).sum(-1, keepdim=True) + 1e-8).sqrt()
        return r / d, d, (p[i] * p[j]).sum(-1, keepdim=True)

    s_n, v_n, e_n = self.norm_s(s), self.norm_v(v), self.norm_e(e)
    u, d, dot = geometry(p)
    out = self.edge_mlp(torch.cat([s_n[i], s_n[j], self.rbf(d), d, dot, e_n], dim=-1))
    S, V = self.s_dim, self.v_dim
    logits, g_dir, g_vec, w_pos = out[:, :S], out[:, S : S + V], out[:, S + V : S + 2 * V], out[:, -1:]
    attn = scatter_softmax(logits, i, n)
    s = s + scatter_sum(attn * self.w_s(s_n)[j], i, n)
    v = v + scatter_mean(u.unsqueeze(-1) * g_dir.unsqueeze(1) + g_vec.unsqueeze(1) * self.w_v(v_n)[j], i, n)
    ds, dv = self.gated(self.norm_s(s), self.norm_v(v))
    s, v = s + ds, v + dv
    if self.position_update == "unit":
        p = p + scatter_mean(torch.tanh(w_pos) * u, i, n)
    else:
        p = p + scatter_mean(w_pos * u * (d / (1.0 + d)), i, n)
    d_new = geometry(p)[1]
    e = e + self.edge_update(torch.cat([e_n, s[i] + s[j], self.rbf(d_new), d_new], dim=-1))
    return s, v, p, e, None


@contextlib.contextmanager
def textbook_layers():
    """Every EQGATLayer runs :func:`_textbook_layer` inside the block."""
    EQGATLayer.forward_with_geometry, fast_layer = _textbook_layer, EQGATLayer.forward_with_geometry
    try:
        yield
    finally:
        EQGATLayer.forward_with_geometry = fast_layer


DEFAULT_QM9 = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "qm9" / "test.npz"


def _output_difference(model: EQGATDiffDenoiser, batch) -> float:
    """Largest relative difference of any output or position gradient, geodiff vs the textbook layer, on a
    float64 copy of the model with every weight perturbed (so no zero-initialised path hides a mistake)."""
    import copy

    import torch.nn.functional as F

    m = copy.deepcopy(model).double()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    num_graphs = batch.num_graphs
    t = torch.rand(num_graphs, generator=g, dtype=torch.float64)

    def run():
        pos = batch.pos.double().clone().requires_grad_(True)
        out = m(pos, F.one_hot(batch.atom_types, 5).double(), F.one_hot(batch.charges, 6).double(),
                F.one_hot(batch.edge_types, 5).double(), t, batch.batch, batch.edge_index)  # fmt: skip
        sum(o.square().sum() for o in out.values()).backward()
        return [*(o.detach() for o in out.values()), pos.grad]

    ours = run()
    with textbook_layers():
        theirs = run()
    pairs = zip(ours, theirs, strict=True)
    return max(float((a - b).abs().max() / b.abs().max().clamp_min(1e-30)) for a, b in pairs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--qm9", default=str(DEFAULT_QM9), help="QM9 npz in the EDM layout")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=5, help="timed training steps (after one warm-up)")
    ap.add_argument(
        "--small", action="store_true", help="CPU size (128/32/16, 4 layers) instead of paper size"
    )
    ap.add_argument("--sample-n", type=int, default=32, help="molecules to sample per sampler (0: skip)")
    ap.add_argument(
        "--compile", action="store_true", help="also time the step with torch.compile(model, dynamic=True)"
    )
    args = ap.parse_args()
    if Path(args.qm9).is_file():
        ds = MoleculeDataset.from_qm9_npz(args.qm9, limit=args.batch + 16, num_workers=1, progress=False)
        source = f"QM9 ({args.qm9})"
    else:  # no dataset here: QM9-like molecules built with RDKit (same elements, 3D conformers)
        ds, source = rdkit_molecules(args.batch), "RDKit-built QM9-like molecules (QM9 file not found)"
    batch = collate_molecules([ds[i] for i in range(args.batch)])
    stats = ds.statistics()
    T = 500
    sch = MoleculeSchedulers(
        pos=E3DDPMScheduler(num_train_timesteps=T, prediction_type="sample"),
        atoms=CategoricalD3PMScheduler(num_classes=5, num_train_timesteps=T, prior_probs=stats.atom_marginal),
        charges=CategoricalD3PMScheduler(
            num_classes=6, num_train_timesteps=T, prior_probs=stats.charge_marginal
        ),
        bonds=CategoricalD3PMScheduler(num_classes=5, num_train_timesteps=T, prior_probs=stats.bond_marginal),
    )
    size = dict(s_dim=128, v_dim=32, e_dim=16, num_layers=4) if args.small else {}
    model = EQGATDiffDenoiser(**size)
    opt = torch.optim.Adam(model.parameters(), lr=5e-4)
    g = torch.Generator().manual_seed(0)

    def step(net):
        out = eqgat_diff_loss(net, batch, sch, generator=g)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()

    def timed_steps(net) -> tuple[float, float]:
        """Seconds of the first (warm-up / compiling) step and the median of ``args.steps`` more."""
        t0 = time.perf_counter()
        step(net)
        first = time.perf_counter() - t0
        times = []
        for _ in range(args.steps):
            t0 = time.perf_counter()
            step(net)
            times.append(time.perf_counter() - t0)
        return first, statistics.median(times)

    diff = _output_difference(model, batch)
    with textbook_layers():
        _, med_base = timed_steps(model)
    _, med = timed_steps(model)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
          f"torch {torch.__version__}; data: {source}")  # fmt: skip
    print(
        f"model: {'small' if args.small else 'paper size'} ({n_params / 1e6:.2f} M parameters); "
        f"batch {args.batch} QM9 molecules, {batch.pos.shape[0]} atoms, {batch.edge_index.shape[1]} edges"
    )
    print(f"train step (forward + backward + Adam): median {med:.3f} s -> {args.batch / med:.1f} molecules/s")
    print(f"  baseline (textbook EQGAT layer): median {med_base:.3f} s -> {args.batch / med_base:.1f} "
          f"molecules/s; geodiff {med_base / med:.2f}x (outputs agree to {diff:.1e} in float64)")  # fmt: skip
    if args.compile:
        first, med_c = timed_steps(torch.compile(model, dynamic=True))  # the first step compiles
        print(f"torch.compile (dynamic): first step {first:.1f} s (compilation), then median "
              f"{med_c:.3f} s -> {args.batch / med_c:.1f} molecules/s, {med / med_c:.2f}x eager")  # fmt: skip
    if args.sample_n > 0:
        from geodiff.pipelines.molecules import MoleculeDiffusionPipeline

        flow = with_data(build("scheduler", "eqgat_flow"), stats)
        # each scheduler at its default steps: DDPM 500 (the paper's), DDIM 50, flow matching's Euler 50
        for sampler, steps, schedulers in (("ddpm", 500, sch), ("ddim", 50, sch), (None, 50, flow)):
            pipe = MoleculeDiffusionPipeline(model, schedulers, ds.vocab, stats)
            t0 = time.perf_counter()
            pipe(num_samples=args.sample_n, sampler=sampler, num_inference_steps=steps,
                 batch_size=args.sample_n, seed=0, progress=False)  # fmt: skip
            dt = time.perf_counter() - t0
            name = sampler or "flow (euler)"
            print(f"sampling {args.sample_n} molecules, {name} {steps} steps: {dt:.1f} s -> "
                  f"{args.sample_n / dt:.2f} molecules/s")  # fmt: skip
    # flow matching's equivariant OT pairing of noise and molecules (module.ot_alignment), per training batch
    ot = ot_pairing_seconds(batch, max(args.steps, 1))
    print(f"OT pairing (Hungarian + Kabsch per molecule) of the batch: best {1e3 * ot:.1f} ms, "
          f"{100 * ot / med:.1f} % of a training step")  # fmt: skip


if __name__ == "__main__":
    main()
