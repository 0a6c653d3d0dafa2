"""Euclidean space R^3 with the zero-centre-of-mass (CoM) subspace used by E(3) diffusion.

Positions of a graph are translation-free when their mean is zero; E(3)-equivariant diffusion (EDM,
EQGAT-diff, GeoTDM) runs entirely in that subspace. Two batch layouts are supported:

* node-flattened (PyTorch Geometric convention): ``x`` is ``[num_nodes, ..., 3]`` and ``batch`` is a
  ``[num_nodes]`` vector of graph ids. The centre is taken over the nodes of each graph and over any extra
  dimensions between the node axis and the coordinate axis (for trajectories ``[num_nodes, frames, 3]`` it is
  the centre over all nodes and all frames, GeoTDM's unconditional setting).
* padded: ``x`` is ``[batch, max_nodes, 3]`` with a boolean ``mask`` of ``[batch, max_nodes]``.
"""

from __future__ import annotations

import torch

from geodiff.errors import GeodiffValueError, check_shape

__all__ = [
    "scatter_mean",
    "remove_mean",
    "remove_mean_masked",
    "center_of_mass",
    "sample_zero_com_gaussian",
    "sample_zero_com_gaussian_masked",
    "num_graphs_of",
    "ot_align",
]


def num_graphs_of(batch: torch.Tensor, num_graphs: int | None = None) -> int:
    """Number of graphs in a batch vector (``batch.max() + 1`` unless given)."""
    if num_graphs is not None:
        return int(num_graphs)
    return int(batch.max().item()) + 1 if batch.numel() else 0


def _check_batch(x: torch.Tensor, batch: torch.Tensor) -> None:
    if batch.dim() != 1 or batch.shape[0] != x.shape[0]:
        raise GeodiffValueError(
            f"batch: expected a [num_nodes] vector with num_nodes = x.shape[0] = {x.shape[0]}, "
            f"got shape {list(batch.shape)}"
        )
    if batch.dtype not in (torch.int64, torch.int32):
        raise GeodiffValueError(f"batch: expected an integer tensor of graph ids, got {batch.dtype}")


def scatter_mean(src: torch.Tensor, index: torch.Tensor, dim_size: int) -> torch.Tensor:
    """Mean of the rows of ``src`` ([n, ...]) grouped by ``index`` ([n]) -> ``[dim_size, ...]``.

    Empty groups give zeros.
    """
    out = torch.zeros((dim_size, *src.shape[1:]), dtype=src.dtype, device=src.device)
    out.index_add_(0, index, src)
    count = torch.bincount(index, minlength=dim_size).clamp_min(1).to(src.dtype)
    return out / count.view(-1, *([1] * (src.dim() - 1)))


def center_of_mass(x: torch.Tensor, batch: torch.Tensor, num_graphs: int | None = None) -> torch.Tensor:
    """Per-graph centre ``[num_graphs, 3]`` of a node-flattened ``x`` ([num_nodes, ..., 3])."""
    check_shape("x", x, (3,), min_dim=2)
    _check_batch(x, batch)
    flat = x.reshape(x.shape[0], -1, 3).mean(dim=1)  # mean over extra (frame) dims first
    return scatter_mean(flat, batch, num_graphs_of(batch, num_graphs))


def remove_mean(x: torch.Tensor, batch: torch.Tensor, num_graphs: int | None = None) -> torch.Tensor:
    """Project node-flattened positions onto the zero-CoM subspace of each graph.

    Args:
        x: ``[num_nodes, ..., 3]`` positions (or noise / vectors).
        batch: ``[num_nodes]`` graph id of each node.
        num_graphs: number of graphs (inferred from ``batch`` when omitted).
    """
    com = center_of_mass(x, batch, num_graphs)
    shape = (x.shape[0],) + (1,) * (x.dim() - 2) + (3,)
    return x - com[batch].view(shape)


def remove_mean_masked(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Zero-CoM projection for padded batches; padded nodes are set to zero.

    Args:
        x: ``[batch, max_nodes, 3]``.
        mask: ``[batch, max_nodes]`` (bool or 0/1), true for real nodes.
    """
    check_shape("x", x, (3,), min_dim=3)
    if mask.shape != x.shape[:-1]:
        raise GeodiffValueError(f"mask: expected shape {list(x.shape[:-1])}, got {list(mask.shape)}")
    m = mask.to(x.dtype).unsqueeze(-1)
    n = m.sum(dim=-2, keepdim=True).clamp_min(1.0)
    mean = (x * m).sum(dim=-2, keepdim=True) / n
    return (x - mean) * m


def sample_zero_com_gaussian(
    shape: tuple[int, ...] | torch.Size,
    batch: torch.Tensor,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
    num_graphs: int | None = None,
) -> torch.Tensor:
    """Standard Gaussian projected onto each graph's zero-CoM subspace (node-flattened)."""
    device = device if device is not None else batch.device
    eps = torch.randn(tuple(shape), generator=generator, dtype=dtype, device=device)
    return remove_mean(eps, batch.to(device), num_graphs)


def sample_zero_com_gaussian_masked(
    mask: torch.Tensor,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Standard Gaussian ``[batch, max_nodes, 3]`` in the zero-CoM subspace; zero on padding."""
    eps = torch.randn((*mask.shape, 3), generator=generator, dtype=dtype, device=mask.device)
    return remove_mean_masked(eps, mask)


def ot_align(
    x: torch.Tensor, noise: torch.Tensor, batch: torch.Tensor, num_graphs: int | None = None
) -> torch.Tensor:
    """Equivariant optimal-transport alignment of zero-CoM ``noise`` ``[num_nodes, 3]`` to ``x`` (EquiFM, Song
    et al. 2023; SemlaFlow, Irwin et al. 2024): within every graph, the noise points are permuted to the
    assignment of least total squared distance (Hungarian method) and then rotated onto ``x`` by the proper
    rotation of least squares (Kabsch). The result is the same set of noise points per graph, rigidly
    rotated, so its distribution is unchanged for isotropic noise; ``ot_align(x Q, noise Q) = ot_align(x,
    noise) Q`` for every orthogonal ``Q``. For flow-matching training (a straighter coupling), not diffusion.
    """
    from scipy.optimize import linear_sum_assignment

    _check_batch(x, batch)
    check_shape("noise", noise, (3,))
    if noise.shape != x.shape:
        raise GeodiffValueError(f"noise: shape {list(noise.shape)} differs from x {list(x.shape)}")
    n_graphs = num_graphs_of(batch, num_graphs)
    out = noise.clone()
    order = torch.argsort(batch, stable=True)
    counts = torch.bincount(batch, minlength=n_graphs).tolist()
    for idx in torch.split(order, counts):
        if len(idx) < 2:
            continue
        a, b = x[idx].double(), noise[idx].double()
        _, col = linear_sum_assignment(torch.cdist(a, b).pow(2).cpu().numpy())
        b = b[torch.as_tensor(col, device=b.device)]
        u, _, vh = torch.linalg.svd(b.T @ a)  # Kabsch: the rotation R with b R^T closest to a
        d = torch.det(vh.T @ u.T).sign()
        fix = torch.diag(torch.stack([torch.ones_like(d), torch.ones_like(d), torch.where(d == 0, 1.0, d)]))
        r = vh.T @ fix @ u.T
        out[idx] = (b @ r.T).to(noise.dtype)
    return out
