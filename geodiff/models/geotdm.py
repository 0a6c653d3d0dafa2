"""GeoTDM denoiser (Han et al., NeurIPS 2024): the EGTN and its learnable equivariant prior.

The EGTN alternates EGNN layers over each frame's graph (ES) with equivariant temporal attention over
each node's frames (ET). For conditional generation (forecasting) the ``num_cond`` observed frames are
concatenated in time before the ``num_target`` noisy frames; the output is cropped to the targets and the
network predicts the noise as ``eps = x_out - x_in`` (translation invariant, rotation equivariant). The
diffusion step enters as a sinusoidal embedding concatenated to the node features, with a flag telling
observed from noisy frames. The model never sees the noise schedule.

The prior mean of the targets, ``x_r`` ``[nodes, num_target, dim]``, comes from :meth:`GeoTDMDenoiser.prior`:

* ``learnable`` (GeoTDM): a small EGTN over the observed frames gives ``xhat_c``, ``hhat_c``;
  ``w(t, s) = gamma_t * mean_channels(W hhat_c(s))`` for every observed frame but the last, whose weight is
  ``1 - sum(others)``, so the weights sum to 1 and ``x_r(t) = sum_s w(t, s) xhat_c(s)`` is E(n)-equivariant.
  ``W`` starts at zero, so an untrained prior is the last observed frame.
* fixed, for ablation: ``last_frame``, ``center_of_mass`` (each system's CoM over its observed frames) and
  ``zero`` (not translation-equivariant).

With ``num_cond = 0`` the model generates whole trajectories (unconditional; the scheduler keeps one
zero centre of mass over all nodes and frames).
"""

from __future__ import annotations

from typing import Literal

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from geodiff.errors import GeodiffValueError, check_finite, check_positive_ints
from geodiff.models.base import StrictLoadMixin
from geodiff.nn.egtn import EGTNBlock, sinusoidal_embedding
from geodiff.nn.frame_averaging import frame_average
from geodiff.nn.plain import PlainTrajectoryNet
from geodiff.nn.scatter import scatter_mean

__all__ = ["GeoTDMDenoiser", "PRIORS", "PREDICTIONS", "BACKBONES", "FRAME_AVERAGING"]

PriorType = Literal["learnable", "last_frame", "center_of_mass", "zero"]
PRIORS = ("learnable", "last_frame", "center_of_mass", "zero")
PREDICTIONS = ("epsilon", "sample")
BACKBONES = ("egtn", "plain")
FRAME_AVERAGING = ("none", "E", "SE")


def drop_last_feature_update(state: dict, config: dict) -> dict | None:
    """Exports made before the denoiser's last EGTN block lost its feature update (geodiff 0.1, before DDP
    support) carry ``net.blocks.{L-1}.temporal.{out,ff,ff_norm}``: the features they update are never read
    (the denoiser outputs coordinates), so dropping them changes nothing."""
    last = f"net.blocks.{int(config['num_layers']) - 1}.temporal."
    dead = tuple(last + name for name in ("out.", "ff.", "ff_norm."))
    if not any(k.startswith(dead) for k in state):
        return None
    return {k: v for k, v in state.items() if not k.startswith(dead)}


class _EGTN(nn.Module):
    """Embedding + EGTN blocks; ``features_out=False``: the caller reads only the coordinates, so the last
    block does not update features (every parameter takes part in the loss)."""

    def __init__(self, in_dim: int, hidden: int, edge_dim: int, layers: int, heads: int,
                 features_out: bool = True):  # fmt: skip
        super().__init__()
        self.embed = nn.Linear(in_dim, hidden)
        self.blocks = nn.ModuleList(
            EGTNBlock(hidden, edge_dim, heads, update_h=features_out or k < layers - 1) for k in range(layers)
        )

    def forward(self, h, x, edge_index, edge_attr):
        h = self.embed(h)
        for block in self.blocks:
            h, x = block(h, x, edge_index, edge_attr)
        return h, x


class GeoTDMDenoiser(StrictLoadMixin, ModelMixin, ConfigMixin):
    """EGTN noise predictor + equivariant prior; save/load with ``save_pretrained`` / ``from_pretrained``.

    Args:
        node_dim, edge_dim: sizes of the invariant node and edge features of the data set.
        dim: spatial dimension (3; 2 for pedestrians).
        num_cond, num_target: observed and generated frames (N-body: 10 -> 20; unconditional: 0 -> 30).
        hidden, num_layers, heads: EGTN width, number of (ES, ET) pairs and attention heads.
        time_dim: size of the diffusion-step embedding.
        prior: ``learnable``, ``last_frame``, ``center_of_mass`` or ``zero`` (ignored when ``num_cond = 0``).
        prior_layers: (ES, ET) pairs of the learnable prior's EGTN.
        prediction: ``epsilon`` (GeoTDM: the noise, ``x_out - x_in``, output key ``eps``) or ``sample``
            (the clean targets ``x_out`` themselves, output key ``x0``: positions, translation-equivariant).
        backbone: ``egtn`` (GeoTDM's, E(d)-equivariant) or ``plain``
            (:class:`~geodiff.nn.plain.PlainTrajectoryNet`: attention on raw coordinates, not equivariant; the
            control for symmetry studies).
        frame_averaging: ``none``, ``E`` or ``SE``: average the networks (denoiser and learnable prior) over
            the PCA frames of their input positions (:mod:`geodiff.nn.frame_averaging`), which makes any
            backbone exactly E(d)/SE(d)-equivariant at 2^d (2^(d-1)) network calls per call.
    """

    config_name = "config.json"
    MIGRATIONS = (("drop_last_feature_update", drop_last_feature_update),)

    @register_to_config
    def __init__(self, node_dim: int = 1, edge_dim: int = 1, dim: int = 3, num_cond: int = 10,
                 num_target: int = 20, hidden: int = 64, num_layers: int = 4, heads: int = 4,
                 time_dim: int = 32, prior: PriorType = "learnable", prior_layers: int = 2,
                 prediction: Literal["epsilon", "sample"] = "epsilon",
                 backbone: Literal["egtn", "plain"] = "egtn",
                 frame_averaging: Literal["none", "E", "SE"] = "none"):  # fmt: skip
        super().__init__()
        check_positive_ints("model", node_dim=node_dim, edge_dim=edge_dim, dim=dim, hidden=hidden,
                            num_layers=num_layers, heads=heads, time_dim=time_dim,
                            prior_layers=prior_layers)  # fmt: skip
        if prediction not in PREDICTIONS:
            raise GeodiffValueError(f"prediction: expected epsilon or sample, got {prediction!r}")
        if prior not in PRIORS:
            raise GeodiffValueError(f"prior: expected one of {', '.join(PRIORS)}, got {prior!r}")
        if num_cond < 0 or num_target < 1:
            raise GeodiffValueError(
                f"frames: need num_cond >= 0 and num_target >= 1, got {num_cond}, {num_target}"
            )
        if backbone not in BACKBONES:
            raise GeodiffValueError(f"backbone: expected egtn or plain, got {backbone!r}")
        if frame_averaging not in FRAME_AVERAGING:
            raise GeodiffValueError(f"frame_averaging: expected none, E or SE, got {frame_averaging!r}")

        def stack(in_dim, layers, features_out=True):
            if backbone == "plain":
                return PlainTrajectoryNet(in_dim, hidden, edge_dim, layers, heads, dim, features_out)
            return _EGTN(in_dim, hidden, edge_dim, layers, heads, features_out)

        self.net = stack(node_dim + time_dim + 1, num_layers, features_out=False)
        if num_cond > 0 and prior == "learnable":
            self.prior_net = stack(node_dim, prior_layers)
            self.prior_weight = nn.Linear(hidden, hidden)
            nn.init.zeros_(self.prior_weight.weight)
            nn.init.zeros_(self.prior_weight.bias)
            self.gamma = nn.Parameter(torch.ones(num_target))

    @property
    def conditional(self) -> bool:
        return self.config.num_cond > 0

    def _run(self, net, h, x, edge_index, edge_attr, batch):
        """``net(h, x, edge_index, edge_attr)``, frame-averaged over the PCA frames of ``x`` per system
        when the model is configured so."""
        group = self.config.frame_averaging
        if group == "none":
            return net(h, x, edge_index, edge_attr)
        return frame_average(lambda p: net(h, p, edge_index, edge_attr), x, batch, ("scalar", "position"),
                             group=group)  # fmt: skip

    def _check(self, name, x, frames):
        check_finite(name, x)
        c = self.config
        if x.dim() != 3 or x.shape[1] != frames or x.shape[2] != c.dim:
            raise GeodiffValueError(f"{name}: expected [nodes, {frames}, {c.dim}], got {list(x.shape)}")

    # --------------------------------------------------------------------------------------- prior
    def prior_weights(self, x_cond, h, edge_index, edge_attr,
                      batch=None) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
        """(weights ``[nodes, num_target, num_cond]`` summing to 1 over the observed frames, ``xhat_c``);
        ``batch``: the system of each node (frame-averaged models need it for more than one system)."""
        c = self.config
        hc = h.unsqueeze(1).expand(-1, c.num_cond, -1)
        hhat, xhat = self._run(self.prior_net, hc, x_cond, edge_index, edge_attr, batch)
        m = self.prior_weight(hhat).mean(-1)  # [nodes, num_cond]: mean over channels, invariant
        w_rest = self.gamma.view(1, -1, 1) * m[:, None, :-1]  # [nodes, num_target, num_cond - 1]
        w_last = 1.0 - w_rest.sum(-1, keepdim=True)
        return torch.cat([w_rest, w_last], dim=-1), xhat

    def prior(self, x_cond, h, edge_index, edge_attr, batch, num_graphs: int | None = None) -> torch.Tensor:
        """Prior mean ``x_r`` ``[nodes, num_target, dim]`` of the target frames given the observed ones."""
        c = self.config
        if not self.conditional:
            raise GeodiffValueError("prior: an unconditional model (num_cond = 0) has no conditional prior")
        self._check("x_cond", x_cond, c.num_cond)
        if c.prior == "learnable":
            w, xhat = self.prior_weights(x_cond, h, edge_index, edge_attr, batch)
            return torch.einsum("nts,nsd->ntd", w, xhat)
        if c.prior == "last_frame":
            return x_cond[:, -1:].expand(-1, c.num_target, -1)
        if c.prior == "center_of_mass":
            n_graphs = num_graphs if num_graphs is not None else int(batch.max()) + 1
            com = scatter_mean(x_cond.mean(1), batch, n_graphs)[batch]
            return com.unsqueeze(1).expand(-1, c.num_target, -1)
        return torch.zeros_like(x_cond[:, :1]).expand(-1, c.num_target, -1)

    # --------------------------------------------------------------------------------------- noise
    def forward(
        self, x_noisy, timestep, h, edge_index, edge_attr, batch, x_cond=None
    ) -> dict[str, torch.Tensor]:
        """Predict the noise of the target frames.

        Args:
            x_noisy: ``[nodes, num_target, dim]`` noisy target frames (diffusion step ``timestep``).
            timestep: diffusion step per system ``[num_systems]`` (or one for all).
            h: ``[nodes, node_dim]`` invariant node features.
            edge_index, edge_attr: ``[2, E]`` directed edges and their invariant features ``[E, edge_dim]``.
            batch: ``[nodes]`` system id of every node.
            x_cond: ``[nodes, num_cond, dim]`` observed frames (conditional models).
        Returns:
            ``{"eps": [nodes, num_target, dim]}`` (``prediction="epsilon"``) or ``{"x0": ...}``.
        """
        c = self.config
        self._check("x_noisy", x_noisy, c.num_target)
        if h.dim() != 2 or h.shape != (x_noisy.shape[0], c.node_dim):
            raise GeodiffValueError(f"h: expected [{x_noisy.shape[0]}, {c.node_dim}], got {list(h.shape)}")
        if self.conditional:
            if x_cond is None:
                raise GeodiffValueError(f"x_cond: this model forecasts from {c.num_cond} observed frames")
            self._check("x_cond", x_cond, c.num_cond)
            x_in = torch.cat([x_cond, x_noisy], dim=1)
        else:
            x_in = x_noisy
        n, f = x_in.shape[:2]
        t = torch.as_tensor(timestep, device=x_in.device, dtype=x_in.dtype).reshape(-1)
        t_node = t.expand(n) if t.numel() == 1 else t[batch]
        temb = sinusoidal_embedding(t_node, c.time_dim)  # [nodes, time_dim]
        flag = torch.zeros(f, 1, dtype=x_in.dtype, device=x_in.device)
        flag[: c.num_cond] = 1.0
        h_in = torch.cat([h.unsqueeze(1).expand(-1, f, -1), temb.unsqueeze(1).expand(-1, f, -1),
                          flag.unsqueeze(0).expand(n, -1, -1)], dim=-1)  # fmt: skip
        if edge_attr is None:
            edge_attr = x_in.new_zeros(edge_index.shape[1], 0)
        _, x_out = self._run(self.net, h_in, x_in, edge_index, edge_attr, batch)
        if c.prediction == "sample":
            return {"x0": x_out[:, c.num_cond :]}
        return {"eps": (x_out - x_in)[:, c.num_cond :]}

    @property
    def output_key(self) -> str:
        """``eps`` or ``x0``: the key of :meth:`forward`'s prediction."""
        return "x0" if self.config.prediction == "sample" else "eps"
