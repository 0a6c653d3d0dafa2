"""Scatter reductions on plain torch (no compiled PyG extensions): sum, mean, softmax over groups."""

from __future__ import annotations

import torch

__all__ = ["gather", "scatter_sum", "scatter_mean", "scatter_softmax"]


def gather(src: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Rows ``src[index]`` as ``index_select``: its backward is an ``index_add_``, several times faster on
    CPU than the accumulating ``index_put_`` that the backward of ``src[index]`` runs."""
    return src.index_select(0, index)


def scatter_sum(src: torch.Tensor, index: torch.Tensor, dim_size: int) -> torch.Tensor:
    """Sum of the rows of ``src`` ([E, ...]) grouped by ``index`` ([E]) -> ``[dim_size, ...]``."""
    out = src.new_zeros((dim_size, *src.shape[1:]))
    return out.index_add_(0, index, src)


def scatter_mean(src: torch.Tensor, index: torch.Tensor, dim_size: int) -> torch.Tensor:
    count = torch.bincount(index, minlength=dim_size).clamp_min(1).to(src.dtype)
    return scatter_sum(src, index, dim_size) / count.view(-1, *([1] * (src.dim() - 1)))


def scatter_softmax(src: torch.Tensor, index: torch.Tensor, dim_size: int) -> torch.Tensor:
    """Softmax of ``src`` ([E, C]) over the rows sharing an ``index``, per column (per channel)."""
    idx = index.view(-1, *([1] * (src.dim() - 1))).expand_as(src)
    group_max = src.new_full((dim_size, *src.shape[1:]), float("-inf"))
    group_max = group_max.scatter_reduce(0, idx, src.detach(), reduce="amax", include_self=True)
    ex = torch.exp(src - gather(group_max, index))
    return ex / gather(scatter_sum(ex, index, dim_size), index).clamp_min(1e-30)
