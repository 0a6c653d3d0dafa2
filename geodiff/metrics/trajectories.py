"""Trajectory metrics (GeoTDM protocol): ADE/FDE over K samples, classic baselines, marginal score.

* ADE: mean Euclidean distance over predicted frames and nodes; FDE: the same at the last frame.
* ``avg`` over K samples (N-body, MD17 in GeoTDM: K = 5): the mean of each sample's error.
* ``min`` over K samples (ETH-UCY, K = 20): for every agent (node) the best of its K predictions
  (Social-GAN's best-of-K), then the mean over agents. ``min_over="system"`` picks one sample per system.
* Baselines computed on the same observed frames: constant velocity (last observed displacement carried
  forward) and linear extrapolation (least-squares line through the observed frames of every node).
* Marginal score (unconditional generation): the L1 gap between 50-bin histograms of the generated and
  the reference coordinates (bin probabilities, common bins from the reference's range), averaged over
  bins and axes.
"""

from __future__ import annotations

from typing import Literal

import torch

from geodiff.errors import GeodiffValueError
from geodiff.nn.scatter import scatter_mean

__all__ = ["cluster_samples", "displacement_errors", "constant_velocity", "evaluate_trajectory_file",
           "format_trajectory_report", "item_errors", "linear_extrapolation", "marginal_score"]  # fmt: skip


def _check(pred: torch.Tensor, target: torch.Tensor) -> None:
    if pred.dim() == 3:
        pred = pred.unsqueeze(0)
    if pred.shape[1:] != target.shape:
        raise GeodiffValueError(
            f"predictions {list(pred.shape)} do not match targets {list(target.shape)} "
            "([K,] nodes, frames, dim)"
        )
    for name, x in (("predictions", pred), ("targets", target)):
        if not bool(torch.isfinite(x).all()):
            raise GeodiffValueError(f"{name}: contain NaN/inf")


def item_errors(
    pred: torch.Tensor,
    target: torch.Tensor,
    batch: torch.Tensor | None = None,
    over: Literal["node", "system"] = "node",
) -> dict[str, torch.Tensor]:
    """ADE/FDE per scored item, for standard errors and paired comparisons: ``pred`` ``[K, nodes, frames,
    dim]`` (or ``[nodes, frames, dim]``), ``target`` ``[nodes, frames, dim]``. Keys ``ade_avg``, ``fde_avg``
    (the mean over the K samples) and ``ade_min``, ``fde_min`` (the best of the K), each ``[items]`` in
    float64: ``items`` = nodes (``over="node"``) or systems (``over="system"``, which needs ``batch``: each
    sample's node-mean error per system, then its mean or minimum over the K samples, ADE and FDE each on
    their own, as GeoTDM's ``experiments/nbody_train.py``)."""
    return _reduce(*_sample_errors(pred, target), batch, over)


def _sample_errors(pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """ADE and FDE of every sample and node ``[K, nodes]`` (float64)."""
    _check(pred, target)
    if pred.dim() == 3:
        pred = pred.unsqueeze(0)
    d = (pred.double() - target.double()).norm(dim=-1)  # [K, nodes, frames]
    return d.mean(-1), d[..., -1]


def _reduce(ade_k: torch.Tensor, fde_k: torch.Tensor, batch: torch.Tensor | None, over: str) -> dict:
    if over == "system":
        if batch is None:
            raise GeodiffValueError("min_over='system' needs the batch vector")
        n = int(batch.max()) + 1
        ade_k = torch.stack([scatter_mean(a, batch, n) for a in ade_k])  # [K, systems]
        fde_k = torch.stack([scatter_mean(f, batch, n) for f in fde_k])
    elif over != "node":
        raise GeodiffValueError(f"min_over: expected node or system, got {over!r}")
    return {"ade_avg": ade_k.mean(0), "fde_avg": fde_k.mean(0),
            "ade_min": ade_k.min(0).values, "fde_min": fde_k.min(0).values}  # fmt: skip


def displacement_errors(
    pred: torch.Tensor,
    target: torch.Tensor,
    batch: torch.Tensor | None = None,
    min_over: Literal["node", "system"] = "node",
) -> dict[str, float]:
    """ADE/FDE of ``pred`` ``[K, nodes, frames, dim]`` (or one sample ``[nodes, frames, dim]``) against
    ``target`` ``[nodes, frames, dim]``: keys ``ade``/``fde`` (= avg over K), ``ade_avg``, ``fde_avg``,
    ``ade_min``, ``fde_min``, ``k``, ``num_nodes``. The averages are over nodes; the minima over the items
    of ``min_over`` (per item: ``item_errors``)."""
    ade_k, fde_k = _sample_errors(pred, target)
    per_node = _reduce(ade_k, fde_k, None, "node")
    items = per_node if min_over == "node" else _reduce(ade_k, fde_k, batch, min_over)
    k = pred.shape[0] if pred.dim() == 4 else 1
    out = {"ade_avg": float(per_node["ade_avg"].mean()), "fde_avg": float(per_node["fde_avg"].mean()),
           "ade_min": float(items["ade_min"].mean()), "fde_min": float(items["fde_min"].mean()),
           "k": int(k), "num_nodes": int(target.shape[0])}  # fmt: skip
    out["ade"], out["fde"] = out["ade_avg"], out["fde_avg"]
    return out


def constant_velocity(x_cond: torch.Tensor, num_target: int) -> torch.Tensor:
    """``[nodes, num_target, dim]``: the last observed displacement repeated (needs 2 observed frames)."""
    if x_cond.shape[1] < 2:
        raise GeodiffValueError(f"constant velocity needs at least 2 observed frames, got {x_cond.shape[1]}")
    v = x_cond[:, -1] - x_cond[:, -2]
    steps = torch.arange(1, num_target + 1, dtype=x_cond.dtype, device=x_cond.device).view(1, -1, 1)
    return x_cond[:, -1:] + steps * v.unsqueeze(1)


def linear_extrapolation(x_cond: torch.Tensor, num_target: int) -> torch.Tensor:
    """``[nodes, num_target, dim]``: the least-squares line through all observed frames, extended."""
    f = x_cond.shape[1]
    if f < 2:
        raise GeodiffValueError(f"linear extrapolation needs at least 2 observed frames, got {f}")
    t = torch.arange(f, dtype=x_cond.dtype, device=x_cond.device)
    tc = t - t.mean()
    mean = x_cond.mean(1, keepdim=True)
    slope = (tc.view(1, -1, 1) * (x_cond - mean)).sum(1, keepdim=True) / (tc**2).sum()
    future = torch.arange(f, f + num_target, dtype=x_cond.dtype, device=x_cond.device) - t.mean()
    return mean + future.view(1, -1, 1) * slope


def marginal_score(generated: torch.Tensor, reference: torch.Tensor, bins: int = 50) -> float:
    """Mean absolute gap between the bin probabilities of 50-bin coordinate histograms (per axis, bins
    from the reference's range; generated values outside it are clamped into the edge bins)."""
    g = generated.reshape(-1, generated.shape[-1]).double()
    r = reference.reshape(-1, reference.shape[-1]).double()
    if g.shape[-1] != r.shape[-1] or not len(g) or not len(r):
        raise GeodiffValueError(f"marginal score: need non-empty coordinates of the same dimension, got "
                                f"{list(generated.shape)} and {list(reference.shape)}")  # fmt: skip
    gaps = []
    for a in range(r.shape[-1]):
        lo, hi = float(r[:, a].min()), float(r[:, a].max())
        hr = torch.histc(r[:, a], bins, lo, hi) / len(r)
        hg = torch.histc(g[:, a].clamp(lo, hi), bins, lo, hi) / len(g)
        gaps.append((hr - hg).abs().mean())
    return float(torch.stack(gaps).mean())


def cluster_samples(pred: torch.Tensor, clusters: int, iterations: int = 20, seed: int = 0) -> torch.Tensor:
    """GeoTDM's ETH-UCY post-processing (hanjq17/GeoTDM ``experiments/eth_train_new.py``, after the SVAE
    paper's final-position clustering): per node, the final positions of its K samples ``pred [K, nodes,
    frames, dim]`` are clustered by k-means into ``clusters`` centres, and for every centre the sample whose
    final position is nearest is kept. Returns ``[clusters, nodes, frames, dim]`` (a sample may be kept
    twice). k-means: k-means++ initialisation (seeded), then Lloyd iterations, all nodes at once."""
    K = pred.shape[0]
    if not 1 <= clusters <= K:
        raise GeodiffValueError(f"cluster: need 1 to {K} centres (the samples per node), got {clusters}")
    final = pred[:, :, -1].transpose(0, 1).double()  # [nodes, K, dim]
    n = final.shape[0]
    g = torch.Generator().manual_seed(seed)
    rows = torch.arange(n)
    first = torch.randint(0, K, (n,), generator=g)
    centres = [final[rows, first]]
    for _ in range(1, clusters):  # k-means++: the next centre drawn in proportion to the squared distance
        d2 = torch.stack([(final - c[:, None]).pow(2).sum(-1) for c in centres]).min(0).values  # [n, K]
        probs = torch.where(d2.sum(-1, keepdim=True) > 0, d2, torch.ones_like(d2))
        centres.append(final[rows, torch.multinomial(probs, 1, generator=g)[:, 0]])
    c = torch.stack(centres, dim=1)  # [n, C, dim]
    for _ in range(iterations):
        assign = torch.cdist(final, c).argmin(-1)  # [n, K]
        onehot = torch.nn.functional.one_hot(assign, clusters).double()  # [n, K, C]
        count = onehot.sum(1)  # [n, C]
        mean = onehot.transpose(1, 2) @ final / count.clamp_min(1).unsqueeze(-1)
        c = torch.where(count.unsqueeze(-1) > 0, mean, c)  # an empty cluster keeps its centre
    keep = torch.cdist(c, final).argmin(-1)  # [n, C]: the sample nearest each centre
    return pred.transpose(0, 1)[rows[:, None], keep].transpose(0, 1)


def focal_nodes(batch: torch.Tensor) -> torch.Tensor:
    """``[nodes]`` True for the first node of every system (the focal agent of EqMotion windows)."""
    first = torch.ones(batch.shape[0], dtype=torch.bool)
    first[1:] = batch[1:] != batch[:-1]
    return first


def evaluate_trajectory_file(path, k: int | None = None, min_over: str = "node", reference=None,
                             cluster: int | None = None, agents: str = "all") -> dict:  # fmt: skip
    """The report of ``geodiff evaluate task=trajectories``: ADE/FDE (avg and min over K) of the forecasts in
    an npz written by ``geodiff sample`` against its ground truth, beside constant-velocity and linear
    baselines on the same observed frames; for unconditional samples the marginal score against the
    reference trajectories (the file's own, or ``reference``: an N-body npz). ``cluster``: reduce the K
    samples of every node to that many by k-means on their final positions first (GeoTDM's ETH-UCY
    protocol: K = 60 clustered to 20, :func:`cluster_samples`). ``agents="focal"``: score only the first
    node of every system (the focal agent of EqMotion windows, ``data.windows=eqmotion``)."""
    from pathlib import Path

    from geodiff.data.trajectories import read_npz
    from geodiff.errors import GeodiffError

    if agents not in ("all", "focal"):
        raise GeodiffError(f"agents: expected all or focal, got {agents!r}")
    if min_over not in ("node", "system"):
        raise GeodiffError(f"min_over: {min_over!r} is not one of node, system")
    p = Path(path)
    arrays = read_npz(p)
    if "pred" not in arrays:
        raise GeodiffError(
            f"{p}: no 'pred' array (expected the npz `geodiff sample` writes; have {sorted(arrays)})"
        )
    pred = torch.from_numpy(arrays["pred"]).double()
    if pred.dim() != 4:
        raise GeodiffError(f"{p}: pred must be [K, nodes, frames, dim], got {list(pred.shape)}")
    if k is not None:
        if k <= 0 or k > pred.shape[0]:
            raise GeodiffError(f"k: must be between 1 and the {pred.shape[0]} samples in {p}, got {k}")
        pred = pred[:k]
    if cluster is not None:
        try:
            pred = cluster_samples(pred, int(cluster))
        except GeodiffValueError as exc:
            raise GeodiffError(f"{p}: {exc}") from None
    batch = torch.from_numpy(arrays["batch"]).long() if "batch" in arrays else None
    if batch is not None:
        ids = torch.unique(batch)
        if batch.shape != (pred.shape[1],) or (len(ids) and not torch.equal(ids, torch.arange(len(ids)))):
            raise GeodiffError(f"{p}: batch must give each of the {pred.shape[1]} nodes its system, numbered "
                               "0, 1, ... without gaps")  # fmt: skip
    if agents == "focal":
        if batch is None:
            raise GeodiffError(f"{p}: agents=focal needs the 'batch' array (which node is in which system)")
        keep = focal_nodes(batch)
        pred, batch = pred[:, keep], batch[keep]
        arrays = {k2: (v[keep.numpy()] if k2 in ("truth", "observed") else v) for k2, v in arrays.items()}
    systems = int(batch.max()) + 1 if batch is not None and len(batch) else None
    report: dict = {"task": "trajectories", "samples": str(p), "dataset": str(arrays.get("dataset", "")),
                    "clustered_to": cluster, "k": int(pred.shape[0]), "num_nodes": int(pred.shape[1]),
                    "num_frames": int(pred.shape[2]), "num_systems": systems, "agents": agents}  # fmt: skip
    try:
        if "truth" in arrays:
            truth = torch.from_numpy(arrays["truth"]).double()
            e = displacement_errors(pred, truth, batch, min_over)  # type: ignore[arg-type]
            report.update({key: e[key] for key in ("ade", "fde", "ade_avg", "fde_avg", "ade_min", "fde_min")})
            report["min_over"] = min_over
            if "observed" in arrays and arrays["observed"].shape[1] >= 2:
                obs = torch.from_numpy(arrays["observed"]).double()
                base = {}
                for name, fn in (("constant_velocity", constant_velocity), ("linear", linear_extrapolation)):
                    b = displacement_errors(fn(obs, truth.shape[1]), truth)
                    base[name] = {"ade": b["ade"], "fde": b["fde"]}
                report["baselines"] = base
        else:
            if reference is not None:
                from geodiff.data.trajectories import load_nbody_npz

                ref_ds = load_nbody_npz(reference, 0, pred.shape[2])
                ref = torch.cat([s.x.double() - s.x.double().mean((0, 1)) for s in ref_ds.samples])
            elif "reference" in arrays and batch is not None:
                ref = _centred(torch.from_numpy(arrays["reference"]).double().unsqueeze(0), batch)[0]
            else:
                raise GeodiffError(f"{p}: no ground truth ('truth') and no reference trajectories")
            # compare shapes free of translation: each system's trajectory relative to its centre of mass
            gen = _centred(pred, batch) if batch is not None else pred
            report["marginal_score"] = marginal_score(gen, ref)
    except GeodiffValueError as exc:
        raise GeodiffError(f"{p}: {exc}") from None
    return report


def _centred(x: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
    """``x`` ``[K, nodes, frames, dim]`` minus each system's centre of mass over its nodes and frames."""
    n = int(batch.max()) + 1
    com = torch.stack([scatter_mean(s.mean(1), batch, n) for s in x])  # [K, systems, dim]
    return x - com[:, batch].unsqueeze(2)


def format_trajectory_report(r: dict) -> list[str]:
    """The table ``geodiff evaluate task=trajectories`` prints for an ``evaluate_trajectory_file`` report."""
    kept = f" (k-means to {r['clustered_to']} of the samples)" if r.get("clustered_to") else ""
    kept += ", focal agents only (the first of each system)" if r.get("agents") == "focal" else ""
    lines = [f"{r['dataset'] or 'trajectories'}: {r['num_systems']} systems, {r['num_nodes']} nodes, "
             f"{r['num_frames']} frames, K = {r['k']}{kept}"]  # fmt: skip
    if "ade" in r:
        lines += [f"  {'method':<22}{'ADE':>9}{'FDE':>9}",
                  f"  {'geodiff (avg of K)':<22}{r['ade_avg']:9.4f}{r['fde_avg']:9.4f}",
                  f"  {'geodiff (min of K)':<22}{r['ade_min']:9.4f}{r['fde_min']:9.4f}"]  # fmt: skip
        for name, b in r.get("baselines", {}).items():
            lines.append(f"  {name.replace('_', ' '):<22}{b['ade']:9.4f}{b['fde']:9.4f}")
    if "marginal_score" in r:
        lines.append(f"  marginal score {r['marginal_score']:.5f} (L1 gap of 50-bin coordinate histograms)")
    return lines
