"""EQGAT-diff denoiser (Le et al., ICLR 2024): EQGAT layers on fully connected molecular graphs.

Inputs (noisy state at diffusion time ``t``): positions [N, 3], one-hot (or soft) atom types [N, A] and
formal charges [N, C], one-hot bond types on the directed edges [E, B], ``t / T`` per graph. Outputs a dict of
predictions of the clean molecule: ``pos`` (x0, centre of mass removed), ``atoms``, ``charges`` and ``bonds``
logits (bond logits are exactly symmetric: ``bonds[i -> j] == bonds[j -> i]``). The model never sees the
noise schedule; time enters through a linear layer added to atom and edge embeddings.

Paper size: 256 scalar, 64 vector and 32 edge channels, 7 layers (``configs/model/eqgat_diff.yaml``).
"""

from __future__ import annotations

import re

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from geodiff.errors import GeodiffValueError, check_finite, check_positive_ints
from geodiff.io import public_config
from geodiff.manifolds import euclidean
from geodiff.models.base import StrictLoadMixin
from geodiff.nn.eqgat import EQGATLayer, GaussianRBF, pair_linear
from geodiff.nn.scatter import gather

__all__ = ["EQGATDiffDenoiser", "molecule_inputs", "reverse_edge_permutation"]


def reverse_edge_permutation(edge_index: torch.Tensor, num_nodes: int) -> torch.Tensor:
    """``rev`` with ``edge_index[:, rev[k]] == edge_index[:, k].flip(0)``; every edge needs its reverse."""
    ids = edge_index[0] * num_nodes + edge_index[1]
    rev_ids = edge_index[1] * num_nodes + edge_index[0]
    order = torch.argsort(ids)
    pos = torch.searchsorted(ids[order], rev_ids)
    pos = pos.clamp_max(len(ids) - 1)
    rev = order[pos]
    if not bool((ids[rev] == rev_ids).all()):
        raise GeodiffValueError("edge_index: every edge (i, j) needs its reverse (j, i) for symmetric bonds")
    return rev


def drop_last_vector_gate(state: dict, config: dict) -> dict | None:
    """Exports made before the last layer lost its vector gate (geodiff 0.1, before DDP support) carry
    ``layers.{L-1}.gated.w2.weight`` and the gate rows of ``layers.{L-1}.gated.mlp.2``: neither ever
    reached the output (the last layer's vectors are not read), so dropping them changes nothing."""
    last = f"layers.{int(config['num_layers']) - 1}.gated."
    if last + "w2.weight" not in state:
        return None
    s_dim = int(config["s_dim"])
    state = {k: v for k, v in state.items() if k != last + "w2.weight"}
    for name in ("mlp.2.weight", "mlp.2.bias"):
        state[last + name] = state[last + name][:s_dim].clone()
    return state


def molecule_inputs(c, pos, atom_types, charges, bonds, t, batch, edge_index) -> tuple[int, torch.Tensor]:
    """Check a molecule denoiser's inputs against its config ``c`` (vocabulary sizes; finite positions) and
    return ``(num_graphs, t [num_graphs, 1])`` with one time given for all graphs broadcast."""
    n = pos.shape[0]
    if atom_types.shape != (n, c.num_atom_types) or charges.shape != (n, c.num_charge_classes):
        raise GeodiffValueError(
            f"atom_types/charges: expected [{n}, {c.num_atom_types}] and [{n}, {c.num_charge_classes}], "
            f"got {list(atom_types.shape)} and {list(charges.shape)}"
        )
    if bonds.shape != (edge_index.shape[1], c.num_bond_types):
        raise GeodiffValueError(
            f"bonds: expected [{edge_index.shape[1]}, {c.num_bond_types}], got {list(bonds.shape)}"
        )
    check_finite("pos", pos)
    num_graphs = int(batch.max()) + 1 if n else 0
    t = torch.as_tensor(t, dtype=pos.dtype, device=pos.device).reshape(-1)
    return num_graphs, (t.expand(num_graphs) if t.numel() == 1 else t).unsqueeze(-1)


class EQGATDiffDenoiser(StrictLoadMixin, ModelMixin, ConfigMixin):
    """EQGAT-diff denoiser; save/load with ``save_pretrained`` / ``from_pretrained`` (safetensors + JSON).

    Args:
        num_atom_types, num_charge_classes, num_bond_types: vocabulary sizes (QM9: 5, 6, 5).
        s_dim, v_dim, e_dim: scalar, vector and edge channels (paper: 256, 64, 32).
        num_layers: EQGAT layers (paper: 7).
        rbf_dim: Gaussian distance features per edge (0: the raw distance only).
        position_update: ``"scaled"`` (EGNN-style, unbounded, starts as the identity) or ``"unit"``
            (bounded ``tanh`` steps along unit vectors, the first shipped model's form).
        self_condition: also read the model's own previous prediction of the clean molecule
            (``forward(..., self_cond=...)``; self-conditioning, Chen et al. 2022: not in the EQGAT-diff
            paper, off by default). Its atom, charge and bond probabilities and its pairwise distances enter
            the atom and edge embeddings, and its displacement ``x0_hat - x`` the vector channels, all through
            bias-free layers that start at zero, so such a model begins as the one without and a missing
            ``self_cond`` adds nothing. See :meth:`self_cond_from`.
    """

    config_name = "config.json"
    MIGRATIONS = (("drop_last_vector_gate", drop_last_vector_gate),)

    @register_to_config
    def __init__(self, num_atom_types: int = 5, num_charge_classes: int = 6, num_bond_types: int = 5,
                 s_dim: int = 256, v_dim: int = 64, e_dim: int = 32, num_layers: int = 7, rbf_dim: int = 32,
                 position_update: str = "scaled", self_condition: bool = False):  # fmt: skip
        super().__init__()
        check_positive_ints("model", num_atom_types=num_atom_types, num_charge_classes=num_charge_classes,
                            num_bond_types=num_bond_types, s_dim=s_dim, v_dim=v_dim, e_dim=e_dim,
                            num_layers=num_layers, rbf_dim=rbf_dim)  # fmt: skip
        self.atom_embed = nn.Linear(num_atom_types + num_charge_classes, s_dim)
        self.edge_embed = nn.Linear(num_bond_types, e_dim)
        self.time_atom = nn.Linear(1, s_dim)
        self.time_edge = nn.Linear(1, e_dim)
        # the last layer's vectors are not read: its vector gate is not built (MIGRATIONS drops it from
        # exports made before)
        self.layers = nn.ModuleList(
            EQGATLayer(s_dim, v_dim, e_dim, rbf_dim=rbf_dim, position_update=position_update,
                       vector_output=k < num_layers - 1)
            for k in range(num_layers)
        )  # fmt: skip
        self.rbf = GaussianRBF(rbf_dim)
        self.atom_head = nn.Sequential(nn.LayerNorm(s_dim), nn.Linear(s_dim, s_dim), nn.SiLU(),
                                       nn.Linear(s_dim, num_atom_types + num_charge_classes))  # fmt: skip
        self.bond_head = nn.Sequential(
            nn.Linear(e_dim + s_dim + 1 + rbf_dim, s_dim), nn.SiLU(), nn.Linear(s_dim, num_bond_types)
        )
        if self_condition:
            self.sc_node = nn.Linear(num_atom_types + num_charge_classes, s_dim, bias=False)
            self.sc_edge = nn.Linear(num_bond_types + rbf_dim + 1, e_dim, bias=False)
            self.sc_vec = nn.Parameter(torch.zeros(v_dim))
            nn.init.zeros_(self.sc_node.weight)
            nn.init.zeros_(self.sc_edge.weight)

    @staticmethod
    def self_cond_from(out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The self-conditioning input made from a prediction (``forward``'s output): x0 positions and the
        class probabilities, detached."""
        probs = {k: out[k].detach().softmax(-1) for k in ("atoms", "charges", "bonds")}
        return {"pos": out["pos"].detach(), **probs}

    @torch.no_grad()
    def grow_from_(self, src: EQGATDiffDenoiser, seed: int = 0) -> dict[str, int]:
        """Load a trained model that is shallower and/or has fewer edge channels (otherwise the same
        architecture), so that this bigger model computes what ``src`` did (up to rounding) and training goes
        on from there with more capacity (``module.init_from`` with a larger ``model.num_layers`` or
        ``model.e_dim``, or ``model.self_condition=true`` for a source without: the self-conditioning
        inputs start at zero). Returns ``{"new_layers": ..., "edge_copies": ..., "self_condition": ...}``.

        Depth: ``src``'s layers go first; the extra layers on top start as the identity
        (:meth:`EQGATLayer.make_identity_`). Edge width (a whole multiple ``k`` of ``src.e_dim``): every edge
        channel is copied ``k`` times (Net2WiderNet): the rows that write the edge stream (embeddings, edge
        updates) are tiled, the LayerNorms' affine parameters too (a channel repeated ``k`` times leaves the
        mean and variance unchanged), and each weight that reads an edge channel is split among its copies in
        random shares that sum to one. The outputs are unchanged, and the random shares give the copies
        different gradients, so they drift apart in training instead of staying duplicates. ``seed`` fixes
        the shares."""
        have, want = src.config.num_layers, self.config.num_layers
        e_old, e_new = src.config.e_dim, self.config.e_dim
        if have > want:
            raise GeodiffValueError(
                f"grow_from_: the source has more layers ({have}) than this model ({want})"
            )
        if e_new % e_old:
            raise GeodiffValueError(
                f"grow_from_: e_dim must be a whole multiple of the source's ({e_old}), got {e_new}"
            )
        if src.config.get("self_condition", False) and not self.config.self_condition:
            raise GeodiffValueError(
                "grow_from_: the source reads self-conditioning inputs, this model does not"
            )
        mine = public_config(self)
        other = {
            k: (v, mine.get(k))
            for k, v in public_config(src).items()
            if k not in ("num_layers", "e_dim", "self_condition") and mine.get(k) != v
        }
        if other:
            raise GeodiffValueError(
                f"grow_from_: another architecture besides the depth and edge width (source, this): {other}"
            )
        k = e_new // e_old
        state = src.state_dict()
        if k > 1:
            g = torch.Generator().manual_seed(seed)
            state = {name: _widen_edge_tensor(name, w, e_old, k, g) for name, w in state.items()}
        if want > have:  # src's last layer becomes a middle one: its vector gate starts closed (zero rows)
            last = f"layers.{have - 1}.gated.mlp.2."
            for name in ("weight", "bias"):
                w = state[last + name]
                state[last + name] = torch.cat([w, w.new_zeros((self.config.v_dim, *w.shape[1:]))])
        shapes = {n: p.shape for n, p in self.state_dict().items()}
        wrong = [n for n, w in state.items() if n in shapes and w.shape != shapes[n]]
        if wrong:
            raise GeodiffValueError(f"grow_from_: parameters do not match in shape ({wrong[:3]})")
        missing, unexpected = self.load_state_dict(state, strict=False)
        new = tuple(f"layers.{i}." for i in range(have, want))
        if want > have:
            new += (f"layers.{have - 1}.gated.w2.",)  # its vector weights keep their fresh initialisation
        gained = self.config.self_condition and not src.config.get("self_condition", False)
        if gained:
            new += ("sc_",)  # the self-conditioning inputs, set to zero below
        if unexpected or not all(m.startswith(new) for m in missing):
            raise GeodiffValueError(f"grow_from_: parameters do not match ({missing[:3]}, {unexpected[:3]})")
        for layer in self.layers[have:]:
            layer.make_identity_()
        if gained:
            for prm in (self.sc_node.weight, self.sc_edge.weight, self.sc_vec):
                prm.zero_()
        return {"new_layers": want - have, "edge_copies": k, "self_condition": bool(gained)}

    def forward(
        self,
        pos: torch.Tensor,
        atom_types: torch.Tensor,
        charges: torch.Tensor,
        bonds: torch.Tensor,
        t: torch.Tensor,
        batch: torch.Tensor,
        edge_index: torch.Tensor,
        self_cond: dict[str, torch.Tensor] | None = None,
    ) -> dict[str, torch.Tensor]:
        """``self_cond``: a previous prediction of the clean molecule (:meth:`self_cond_from`), for a model
        built with ``self_condition``; ``None`` (the first step, half the training batches) adds nothing."""
        c = self.config
        n = pos.shape[0]
        num_graphs, t = molecule_inputs(c, pos, atom_types, charges, bonds, t, batch, edge_index)
        j, i = edge_index
        edge_graph = batch[i]
        p = euclidean.remove_mean(pos, batch, num_graphs)
        s = self.atom_embed(torch.cat([atom_types, charges], dim=-1)) + gather(self.time_atom(t), batch)
        e = self.edge_embed(bonds) + gather(self.time_edge(t), edge_graph)
        v = pos.new_zeros((n, 3, c.v_dim))
        if c.self_condition:  # without a previous prediction its inputs still run, times zero (DDP)
            s, v, e = self._add_self_cond(self_cond, s, v, e, p, batch, num_graphs, edge_index)
        elif self_cond is not None:
            raise GeodiffValueError("self_cond: this model was built without self_condition")
        geom = None  # each layer hands the next the distances and RBFs of the positions it produced
        for layer in self.layers:
            s, v, p, e, geom = layer.forward_with_geometry(s, v, p, e, edge_index, geom)
        node = self.atom_head(s)
        rev = reverse_edge_permutation(edge_index, n)
        d = (gather(p, i) - gather(p, j)).norm(dim=-1, keepdim=True)
        hidden = pair_linear(self.bond_head[0], s, edge_index, before=(e + gather(e, rev),),
                             after=(self.rbf(d), d), symmetric=True)  # fmt: skip
        # = bond_head(cat([e_ij + e_ji, s_i + s_j, rbf(d_ij), d_ij]))
        bond_logits = self.bond_head[2](self.bond_head[1](hidden))
        return {
            "pos": euclidean.remove_mean(p, batch, num_graphs),
            "atoms": node[:, : c.num_atom_types],
            "charges": node[:, c.num_atom_types :],
            "bonds": 0.5 * (bond_logits + gather(bond_logits, rev)),  # exact symmetry
        }

    def _add_self_cond(self, sc, s, v, e, p, batch, num_graphs, edge_index):
        """Add the self-conditioning inputs of ``sc``; ``sc=None`` (no previous prediction) adds exactly
        nothing, but through the same weights times zero, so that they take part in every step's graph."""
        c = self.config
        n, num_edges = p.shape[0], edge_index.shape[1]
        present = sc is not None
        if not present:
            sc = {"pos": p.detach(), "atoms": s.new_zeros((n, c.num_atom_types)),
                  "charges": s.new_zeros((n, c.num_charge_classes)),
                  "bonds": e.new_zeros((num_edges, c.num_bond_types))}  # fmt: skip
        want = {"pos": (n, 3), "atoms": (n, c.num_atom_types), "charges": (n, c.num_charge_classes),
                "bonds": (num_edges, c.num_bond_types)}  # fmt: skip
        got = {k: tuple(sc[k].shape) if k in sc else None for k in want}
        if got != want:
            raise GeodiffValueError(f"self_cond: expected shapes {want}, got {got}")
        j, i = edge_index
        x_hat = euclidean.remove_mean(sc["pos"].to(p.dtype), batch, num_graphs)
        d_hat = (gather(x_hat, i) - gather(x_hat, j)).norm(dim=-1, keepdim=True)
        w = 1.0 if present else 0.0
        s = s + w * self.sc_node(torch.cat([sc["atoms"], sc["charges"]], dim=-1).to(s.dtype))
        e = e + w * self.sc_edge(torch.cat([sc["bonds"].to(e.dtype), self.rbf(d_hat), d_hat], dim=-1))
        v = v + w * (x_hat - p).unsqueeze(-1) * self.sc_vec
        return s, v, e


def _tile_rows(w: torch.Tensor, k: int) -> torch.Tensor:
    """Rows (output channels) repeated ``k`` times, as ``[w; w; ...]``."""
    return w.repeat(k, *([1] * (w.dim() - 1)))


def _split_columns(w: torch.Tensor, start: int, width: int, k: int, g: torch.Generator) -> torch.Tensor:
    """Columns ``start:start+width`` (inputs read from edge channels that now come ``k`` times) replaced by
    ``k`` blocks, the old block times random shares that sum to one per weight (``u / sum(u)`` with ``u`` in
    [1, 2): between 1/3 and 2/3 for two copies), so the layer's output on copied inputs is unchanged."""
    block = w[:, start : start + width]
    u = 1.0 + torch.rand((k, *block.shape), generator=g, dtype=torch.float64)
    shares = (u / u.sum(0)).to(w.dtype)
    return torch.cat([w[:, :start], *(block * shares), w[:, start + width :]], dim=1)


def _widen_edge_tensor(name: str, w: torch.Tensor, e_old: int, k: int, g: torch.Generator) -> torch.Tensor:
    """One tensor of an EQGAT-diff state dict with ``e_old`` edge channels, for a model with ``k * e_old``
    (see :meth:`EQGATDiffDenoiser.grow_from_`). Where the edge channels sit in each weight follows the
    layout of :func:`pair_linear`'s ``cat([*before, x..., *after])``."""
    layer = re.fullmatch(r"layers\.\d+\.(.+)", name)
    key = layer.group(1) if layer else name
    if key in ("edge_embed.weight", "edge_embed.bias", "time_edge.weight", "time_edge.bias",
               "norm_e.weight", "norm_e.bias", "edge_update.0.bias", "edge_update.2.bias"):  # fmt: skip
        return _tile_rows(w, k)  # writes (or normalises) the edge stream
    if key == "sc_edge.weight":  # writes the edge stream
        return _tile_rows(w, k)
    if key == "bond_head.0.weight":  # reads cat([e_ij + e_ji, s_i + s_j, rbf, d])
        return _split_columns(w, 0, e_old, k, g)
    if key == "edge_mlp.0.weight":  # reads cat([s_i, s_j, rbf, d, p_i . p_j, e_ij])
        return _split_columns(w, w.shape[1] - e_old, e_old, k, g)
    if key in ("edge_update.0.weight", "edge_update.2.weight"):  # reads e first, writes e_dim channels
        return _split_columns(_tile_rows(w, k), 0, e_old, k, g)
    return w
