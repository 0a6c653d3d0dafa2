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
