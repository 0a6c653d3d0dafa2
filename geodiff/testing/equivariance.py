"""One reusable float64 equivariance assertion (in the spirit of e3nn's ``assert_equivariant``).

Describe what each input and output *is* and the helper checks that transforming the inputs transforms
the outputs the same way, separately for each kind of transformation so a failure names it::

    from geodiff.testing import assert_equivariant

    assert_equivariant(
        lambda h, x, batch: model(h, x, batch),          # returns a tuple, a tensor or a dict
        inputs=[h, x, batch],
        input_kinds=["node_scalar", "node_position", "node_index"],
        output_kinds=["node_scalar", "node_position"],   # a dict of kinds for dict outputs
    )

Kinds (the node axis is 0 and coordinates are the last axis, so ``[N, 3]`` and trajectories
``[N, frames, 3]`` both work):

=================  =========================  ============================  ==================
kind               rotation / reflection Q    translation t                 node permutation P
=================  =========================  ============================  ==================
``node_position``  ``x Q^T``                  ``+ t``                       rows permuted
``node_vector``    ``v Q^T``                  unchanged                     rows permuted
``node_pseudovector`` ``det(Q) v Q^T``        unchanged                     rows permuted
``node_scalar``    unchanged                  unchanged                     rows permuted
``node_index``     unchanged                  unchanged                     rows permuted (e.g. ``batch``)
``edge_index``     unchanged                  unchanged                     node ids relabelled
``edge_vector``    ``v Q^T``                  unchanged                     unchanged (edge order kept)
``position``       ``x Q^T``                  ``+ t``                       unchanged (not per node)
``vector``         ``v Q^T``                  unchanged                     unchanged
``pose``           ``G H`` (``G = [Q, t]``)   (in G)                        unchanged
``invariant``      unchanged                  unchanged                     unchanged
=================  =========================  ============================  ==================

A callable ``(tensor, Transform) -> tensor`` may stand in for any kind.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch

from geodiff.manifolds import so3

__all__ = [
    "Transform",
    "assert_equivariant",
    "mirror",
    "orbit_errors",
    "random_transform",
    "rotation_grid",
    "transform_errors",
    "KINDS",
]

KINDS = (
    "node_position",
    "node_vector",
    "node_pseudovector",
    "node_scalar",
    "node_index",
    "edge_index",
    "edge_vector",
    "position",
    "vector",
    "pose",
    "invariant",
)


@dataclass
class Transform:
    """An element of E(3) x S_N: orthogonal ``Q`` (3x3), translation ``t`` (3) and node permutation ``perm``.

    ``perm[i]`` is the old index of new node ``i`` (new = old[perm]).
    """

    Q: torch.Tensor
    t: torch.Tensor
    perm: torch.Tensor | None

    @property
    def inverse_perm(self) -> torch.Tensor | None:
        if self.perm is None:
            return None
        inv = torch.empty_like(self.perm)
        inv[self.perm] = torch.arange(len(self.perm), device=self.perm.device)
        return inv

    def apply(self, x, kind):
        if x is None or not isinstance(x, torch.Tensor):
            return x
        if callable(kind):
            return kind(x, self)
        Q = self.Q.to(x.dtype) if x.is_floating_point() else self.Q
        t = self.t.to(x.dtype) if x.is_floating_point() else self.t
        p = self.perm
        if kind == "node_position":
            y = x @ Q.T + t
        elif kind == "node_vector":
            y = x @ Q.T
        elif kind == "node_pseudovector":
            y = torch.linalg.det(Q) * (x @ Q.T)
        elif kind in ("node_scalar", "node_index"):
            y = x
        elif kind == "edge_index":
            inv = self.inverse_perm
            return x if inv is None else inv.to(x.device)[x]
        elif kind == "edge_vector" or kind == "vector":
            return x @ Q.T
        elif kind == "position":
            return x @ Q.T + t
        elif kind == "pose":
            g = torch.eye(4, dtype=x.dtype, device=x.device)
            g[:3, :3] = Q
            g[:3, 3] = t
            return g @ x
        elif kind == "invariant":
            return x
        else:
            raise ValueError(f"kind: unknown kind {kind!r}; expected one of {KINDS} or a callable")
        return y if p is None else y[p.to(y.device)]


def mirror(dim: int = 3, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """The reflection ``x -> -x`` on the first axis, ``[dim, dim]``: composed with a rotation it gives every
    improper element of O(dim)."""
    return torch.diag(torch.tensor([-1.0] + [1.0] * (dim - 1), dtype=dtype))


def random_transform(
    num_nodes: int | None,
    rotation: bool = True,
    reflection: bool = False,
    translation: bool = True,
    permutation: bool = True,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
) -> Transform:
    """Random element of E(3) x S_N; ``reflection=True`` makes ``Q`` improper (det = -1)."""
    Q = so3.random_rotation((), generator, dtype) if rotation else torch.eye(3, dtype=dtype)
    if reflection:
        Q = Q @ mirror(3, dtype)
    t = 3 * torch.randn(3, generator=generator, dtype=dtype) if translation else torch.zeros(3, dtype=dtype)
    perm = torch.randperm(num_nodes, generator=generator) if (permutation and num_nodes) else None
    return Transform(Q, t, perm)


def _flatten(out, kinds):
    if isinstance(out, Mapping):
        if not isinstance(kinds, Mapping):
            raise TypeError("output_kinds: the function returns a dict, give a dict of kinds")
        return {k: (out[k], kinds[k]) for k in kinds}
    if isinstance(out, torch.Tensor):
        return {"output": (out, kinds if not isinstance(kinds, (list, tuple)) else kinds[0])}
    return {f"output[{i}]": (o, k) for i, (o, k) in enumerate(zip(out, kinds, strict=True))}


def _num_nodes(inputs, kinds) -> int | None:
    for x, k in zip(inputs, kinds, strict=True):
        if isinstance(k, str) and k.startswith("node_") and isinstance(x, torch.Tensor):
            return x.shape[0]
    return None


def assert_equivariant(
    func: Callable,
    inputs: Sequence,
    input_kinds: Sequence,
    output_kinds,
    rotations: bool = True,
    reflections: bool = True,
    translations: bool = True,
    permutations: bool = True,
    trials: int = 2,
    atol: float = 1e-9,
    rtol: float = 1e-7,
    seed: int = 0,
    orbit: tuple[int, int] | None = None,
) -> dict[str, float]:
    """Assert ``func(T inputs) == T func(inputs)`` for random ``T`` in E(3) x S_N (float64 recommended).

    Each enabled transformation family is checked on its own and then all together, ``trials`` times.
    ``orbit=(num_axes, num_angles)`` also sweeps that grid of rotations (:func:`orbit_errors`: every axis
    and angle, not only random ones; entry ``"orbit"``). Returns the largest error seen per family; raises
    ``AssertionError`` naming the family and the output that broke.
    """
    if len(inputs) != len(input_kinds):
        raise ValueError("input_kinds: need one kind per input")
    g = torch.Generator().manual_seed(seed)
    n = _num_nodes(inputs, input_kinds)
    families = []
    if rotations:
        families.append(("rotation", dict(rotation=True)))
    if reflections:
        families.append(("reflection", dict(rotation=True, reflection=True)))
    if translations:
        families.append(("translation", dict(translation=True)))
    if permutations and n:
        families.append(("permutation", dict(permutation=True)))
    combined = dict(rotation=rotations, reflection=reflections, translation=translations,
                    permutation=permutations)  # fmt: skip
    families.append(("combined", combined))
    base = _flatten(func(*inputs), output_kinds)
    worst: dict[str, float] = {}
    if orbit is not None and rotations:
        dim = next((x.shape[-1] for x, k in zip(inputs, input_kinds, strict=True)
                    if k in ("node_position", "node_vector", "position", "vector")), 3)  # fmt: skip
        sweep = orbit_errors(func, inputs, input_kinds, output_kinds, *orbit, dim=dim)
        worst["orbit"] = sweep["max"]
        scale = max((float(y.abs().max()) for y, _ in base.values() if y.is_floating_point() and y.numel()),
                    default=0.0)  # fmt: skip
        if sweep["max"] > atol + rtol * scale:
            k = int(torch.cat(list(sweep["errors"].values())).argmax()) % len(sweep["angles"])
            axis, angle = sweep["axes"][k].tolist(), float(sweep["angles"][k])
            raise AssertionError(f"orbit: error {sweep['max']:.3e} at axis {axis}, angle {angle:.3f} rad "
                                 f"(atol {atol:g})")  # fmt: skip
    for name, flags in families:
        opts = {"rotation": False, "reflection": False, "translation": False, "permutation": False, **flags}
        for _ in range(trials):
            tr = random_transform(n, generator=g, **opts)
            moved_in = [tr.apply(x, k) for x, k in zip(inputs, input_kinds, strict=True)]
            got = _flatten(func(*moved_in), output_kinds)
            for key, (y, kind) in base.items():
                want = tr.apply(y, kind)
                have = got[key][0]
                if want.shape != have.shape:
                    raise AssertionError(
                        f"{name}: {key} changed shape {list(want.shape)} -> {list(have.shape)}"
                    )
                if not want.is_floating_point():
                    if not torch.equal(want, have):
                        raise AssertionError(f"{name}: {key} (integer) is not {kind}-equivariant")
                    continue
                err = float((want - have).detach().abs().max()) if want.numel() else 0.0
                worst[name] = max(worst.get(name, 0.0), err)
                if not torch.allclose(have.detach(), want.detach(), atol=atol, rtol=rtol):
                    raise AssertionError(
                        f"{name}: {key} is not {kind if isinstance(kind, str) else 'custom'}-equivariant "
                        f"(max abs error {err:.3e}, atol {atol:g}, rtol {rtol:g})"
                    )
    return worst


Grid = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def rotation_grid(num_axes: int = 12, num_angles: int = 8, dim: int = 3,
                  dtype: torch.dtype = torch.float64) -> Grid:  # fmt: skip
    """A grid over the rotation group for orbit sweeps (NERO plots): ``(rotations [M, d, d], axes [M, 3],
    angles [M])``. In 3D, ``num_axes`` axes spread evenly on the sphere (a Fibonacci lattice) times
    ``num_angles`` angles in (0, pi]; in 2D (``dim=2``), ``num_angles`` angles in (0, 2 pi) about the z axis
    (``num_axes`` is ignored)."""
    if dim not in (2, 3):
        raise ValueError(f"dim: expected 2 or 3, got {dim}")
    if num_angles < 1 or (dim == 3 and num_axes < 1):
        raise ValueError(f"grid: need at least one axis and one angle, got {num_axes} x {num_angles}")
    if dim == 2:
        angles = torch.arange(1, num_angles + 1, dtype=dtype) * (2 * torch.pi / (num_angles + 1))
        c, s = torch.cos(angles), torch.sin(angles)
        rot = torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)
        axes = torch.tensor([0.0, 0.0, 1.0], dtype=dtype).expand(num_angles, 3)
        return rot, axes, angles
    k = torch.arange(num_axes, dtype=dtype) + 0.5
    z = 1 - 2 * k / num_axes
    phi = k * torch.pi * (3 - 5**0.5)  # the golden angle
    r = (1 - z**2).clamp_min(0).sqrt()
    axes = torch.stack([r * torch.cos(phi), r * torch.sin(phi), z], -1)
    angles = torch.arange(1, num_angles + 1, dtype=dtype) * (torch.pi / num_angles)
    a = axes.repeat_interleave(num_angles, 0)
    ang = angles.repeat(num_axes)
    return so3.exp(a * ang.unsqueeze(-1)), a, ang


def orbit_errors(func: Callable, inputs: Sequence, input_kinds: Sequence, output_kinds,
                 num_axes: int = 12, num_angles: int = 8, dim: int = 3,
                 reflect: bool = False) -> dict:  # fmt: skip
    """The equivariance error of ``func`` at every rotation of :func:`rotation_grid` (NERO: Non-Equivariance
    Revealed on Orbits): ``{"axes" [M, 3], "angles" [M], "errors": {output: [M]}, "max", "median"}``, the
    error being the largest absolute difference between ``func(Q inputs)`` and ``Q func(inputs)``.
    ``reflect=True`` composes every rotation with a reflection (x -> -x on the first axis)."""
    rot, axes, angles = rotation_grid(num_axes, num_angles, dim)
    if reflect:
        rot = rot @ mirror(dim, rot.dtype)
    transforms = [Transform(q, torch.zeros(dim, dtype=q.dtype), None) for q in rot]
    tensor = transform_errors(func, inputs, input_kinds, output_kinds, transforms)
    every = torch.cat(list(tensor.values()))
    return {"axes": axes, "angles": angles, "errors": tensor, "max": float(every.max()),
            "median": float(every.median())}  # fmt: skip


def transform_errors(func: Callable, inputs: Sequence, input_kinds: Sequence, output_kinds,
                     transforms: Sequence[Transform]) -> dict[str, torch.Tensor]:  # fmt: skip
    """The equivariance error of every output of ``func`` under each of ``transforms`` (no assertion):
    ``{output: [len(transforms)]}``, the largest absolute difference between ``func(T inputs)`` and
    ``T func(inputs)`` (inf where an integer output differs)."""
    base = _flatten(func(*inputs), output_kinds)
    errors: dict[str, list[float]] = {key: [] for key in base}
    for tr in transforms:
        got = _flatten(
            func(*[tr.apply(x, k) for x, k in zip(inputs, input_kinds, strict=True)]), output_kinds
        )
        for key, (y, kind) in base.items():
            want, have = tr.apply(y, kind), got[key][0]
            if not want.is_floating_point():
                errors[key].append(0.0 if torch.equal(want, have) else float("inf"))
                continue
            errors[key].append(float((want - have).detach().abs().max()) if want.numel() else 0.0)
    return {k: torch.tensor(v, dtype=torch.float64) for k, v in errors.items()}
