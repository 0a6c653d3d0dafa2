"""Surrogate registration network for SE(3) diffusion registration (Jiang et al., NeurIPS 2023).

At reverse step ``t`` with current pose ``H_t`` (source -> target), the network predicts the clean pose
``H0_hat``. It scores every source/target point pair with

    logit_ij = tau(t) <a_i, b_j> / sqrt(F)  -  beta(t) |H_t x_i - y_j|^2

where ``a``, ``b`` are rotation-invariant point features (point-pair features or an e3nn spherical-harmonic
power spectrum, then DCP-style self/cross attention) and ``tau``, ``beta`` are learned functions of the
diffusion time. Early in the reverse process (``H_t`` near the identity, far from the answer) the features
carry the matching; late, the spatial term sharpens it like ICP. Sinkhorn with a slack row/column (RPMNet)
turns logits into soft correspondences, and a weighted Procrustes (SVD) head returns ``H0_hat``.

Because features are invariant and the spatial term only sees ``H_t x - y``, the prediction is exactly
SE(3)-equivariant: for rigid ``S`` (moving the source) and ``G`` (moving the target),
``f(S x, G y, G H_t S^-1) = G f(x, y, H_t) S^-1``; it is invariant to permutations of either cloud.

The encoder runs once per pair; the reverse steps only redo the cheap matching (:meth:`encode` +
:meth:`match`). Clouds are expected centred and scaled (:func:`normalize_pair`).
"""

from __future__ import annotations

import math

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from geodiff.errors import GeodiffValueError, check_finite, check_positive_ints, check_shape
from geodiff.models.base import StrictLoadMixin
from geodiff.nn.pointcloud import (
    CrossTransformer,
    Encoder,
    PPFEncoder,
    SphericalHarmonicEncoder,
    knn,
    local_geometry,
    log_sinkhorn,
    pairwise_distances,
    weighted_procrustes,
)

__all__ = ["RegistrationNet", "normalize_pair", "denormalize_pose", "normalized_pose"]


def normalize_pair(source: torch.Tensor, target: torch.Tensor):
    """Centre each cloud on its centroid and scale both by the target's RMS radius. Returns
    ``(source', target', c_source, c_target, scale)``; poses between the normalised clouds map back with
    :func:`denormalize_pose`."""
    cs, ct = source.mean(1, keepdim=True), target.mean(1, keepdim=True)
    scale = (target - ct).pow(2).sum(-1).mean(-1).sqrt().clamp_min(1e-12)  # [B]
    s = scale.view(-1, 1, 1)
    return (source - cs) / s, (target - ct) / s, cs.squeeze(1), ct.squeeze(1), scale


def denormalize_pose(
    h: torch.Tensor, cs: torch.Tensor, ct: torch.Tensor, scale: torch.Tensor
) -> torch.Tensor:
    """Pose between the original clouds from the pose ``h`` between the normalised ones:
    ``R = R'``, ``t = c_t + s t' - R' c_s``."""
    out = h.clone()
    r = h[:, :3, :3]
    out[:, :3, 3] = ct + scale.unsqueeze(-1) * h[:, :3, 3] - (r @ cs.unsqueeze(-1)).squeeze(-1)
    return out


def normalized_pose(h: torch.Tensor, cs: torch.Tensor, ct: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`denormalize_pose`: ``t' = (R c_s + t - c_t) / s``."""
    out = h.clone()
    r = h[:, :3, :3]
    out[:, :3, 3] = ((r @ cs.unsqueeze(-1)).squeeze(-1) + h[:, :3, 3] - ct) / scale.unsqueeze(-1)
    return out


def _timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 1000.0) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float64, device=t.device) / half)
    ang = t.double().unsqueeze(-1) * freqs
    return torch.cat([ang.sin(), ang.cos()], dim=-1)


class RegistrationNet(StrictLoadMixin, ModelMixin, ConfigMixin):
    """Invariant features + soft correspondences + weighted Procrustes, conditioned on the diffusion step.

    Args:
        dim: feature width F.
        encoder: ``ppf`` (point-pair features) or ``e3nn`` (spherical-harmonic power spectrum).
        num_neighbors: k of the local neighbourhoods.
        encoder_layers: invariant edge-conv layers after the local descriptor.
        attention_layers, heads: the self/cross attention transformer.
        sinkhorn_iters: Sinkhorn normalisation rounds.
        time_dim: width of the diffusion-step embedding.
    """

    @register_to_config
    def __init__(self, dim: int = 64, encoder: Encoder = "ppf", num_neighbors: int = 16,
                 encoder_layers: int = 2, attention_layers: int = 2, heads: int = 4, sinkhorn_iters: int = 5,
                 time_dim: int = 32):  # fmt: skip
        super().__init__()
        check_positive_ints("model", dim=dim, num_neighbors=num_neighbors, encoder_layers=encoder_layers,
                            attention_layers=attention_layers, heads=heads, sinkhorn_iters=sinkhorn_iters,
                            time_dim=time_dim)  # fmt: skip
        if encoder == "ppf":
            self.local_encoder = PPFEncoder(dim, encoder_layers)
        elif encoder == "e3nn":
            self.local_encoder = SphericalHarmonicEncoder(dim, encoder_layers)
        else:
            raise GeodiffValueError(f"encoder: expected ppf or e3nn, got {encoder!r}")
        self.transformer = CrossTransformer(dim, heads, attention_layers)
        self.proj_source = nn.Linear(dim, dim)
        self.proj_target = nn.Linear(dim, dim)
        self.time_mlp = nn.Sequential(nn.Linear(time_dim, 64), nn.SiLU(), nn.Linear(64, 3))
        with torch.no_grad():  # start from tau = 1, beta = 1, slack logit = 0
            self.time_mlp[-1].weight.zero_()
            self.time_mlp[-1].bias.copy_(torch.tensor([0.5413, 0.5413, 0.0]))

    def _check(self, source: torch.Tensor, target: torch.Tensor) -> None:
        for name, x in (("source", source), ("target", target)):
            check_shape(name, x, (3,), min_dim=3)
            check_finite(name, x)
            if x.shape[1] < 3:
                raise GeodiffValueError(f"{name}: needs at least 3 points per cloud, got {x.shape[1]}")
        if source.shape[0] != target.shape[0]:
            raise GeodiffValueError(
                f"source/target: batch sizes differ ({source.shape[0]} vs {target.shape[0]})"
            )

    def encode(self, source: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Invariant per-point features ``[B, N, F]``, ``[B, M, F]`` of a pair (independent of any pose)."""
        self._check(source, target)
        feats = []
        for x in (source, target):
            idx = knn(x, self.config.num_neighbors)
            with torch.no_grad():
                normals, extents = local_geometry(x, idx)
            feats.append(self.local_encoder(x, idx, normals, extents))
        hs, ht = self.transformer(feats[0], feats[1])
        return self.proj_source(hs), self.proj_target(ht)

    def match(
        self,
        features: tuple[torch.Tensor, torch.Tensor],
        source: torch.Tensor,
        target: torch.Tensor,
        pose: torch.Tensor,
        timestep: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """Soft correspondences under the current pose and the resulting clean-pose estimate."""
        check_shape("pose", pose, (4, 4), min_dim=3)
        a, b = features
        t = torch.as_tensor(timestep, device=source.device).reshape(-1).expand(source.shape[0])
        emb = _timestep_embedding(t, self.config.time_dim).to(source.dtype)
        tau, beta, slack = self.time_mlp(emb).unbind(-1)
        tau, beta = nn.functional.softplus(tau), nn.functional.softplus(beta)
        moved = source @ pose[:, :3, :3].transpose(1, 2) + pose[:, None, :3, 3]
        logits = tau.view(-1, 1, 1) * (a @ b.transpose(1, 2)) / math.sqrt(a.shape[-1])
        logits = logits - beta.view(-1, 1, 1) * pairwise_distances(moved, target).pow(2)
        p = log_sinkhorn(logits, slack.view(-1, 1, 1), self.config.sinkhorn_iters)
        w = p.sum(-1)
        # each point's soft correspondence; a weight below 1e-9 used to be clamped there, which moved that
        # point's y_hat off the target's frame (a translation equivariance error of the weight's size)
        y_hat = (p @ target) / w.unsqueeze(-1).clamp_min(torch.finfo(w.dtype).tiny)
        h0 = weighted_procrustes(source, y_hat, w)
        return {"pose": h0, "weights": w, "matching": p}

    def forward(
        self, source: torch.Tensor, target: torch.Tensor, pose: torch.Tensor, timestep: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """``{"pose": H0_hat [B, 4, 4], "weights": [B, N], "matching": [B, N, M]}`` for source
        ``[B, N, 3]``, target ``[B, M, 3]``, current pose ``[B, 4, 4]`` and diffusion step ``[B]`` (or a
        scalar)."""
        return self.match(self.encode(source, target), source, target, pose, timestep)
