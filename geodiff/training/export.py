"""Warm starts and lineage of exported models: load an export's weights into a model (``init_from``), its
EMA copy, and the ``training`` record that says how an export was made, stage by stage."""

from __future__ import annotations

import json
import os

from geodiff.config import resolve_checkpoint
from geodiff.errors import GeodiffError, GeodiffValueError
from geodiff.io import public_config
from geodiff.training.ema import ema_model

__all__ = [
    "load_exported_weights",
    "model_with_ema",
    "read_training_record",
    "record_stages",
    "training_record",
    "warm_start",
]


def load_exported_weights(model, directory: str | os.PathLike) -> None:
    """Warm start ``model`` from an exported model folder (``<dir>/model``, e.g. a shipped checkpoint), so
    CPU training can go on across sessions; the architectures must match exactly, except that a model with
    ``grow_from_`` (the EQGAT-diff denoiser) may have more layers (the new ones start as the identity) and a
    whole multiple of the edge channels (copied, see ``EQGATDiffDenoiser.grow_from_``) and self-conditioning
    inputs the export lacks (starting at zero)."""
    try:
        path = resolve_checkpoint(directory) / "model"
    except GeodiffError as err:
        raise GeodiffError(f"init_from: {err}") from None
    if not (path / "config.json").is_file():
        raise GeodiffError(f"init_from: {path.parent} is not an exported model (no model/config.json)")
    try:
        src = type(model).from_pretrained(path)
    except GeodiffError as err:
        raise GeodiffError(f"init_from: {err}") from None
    mine, theirs = public_config(model), public_config(src)
    diff = {k: (theirs.get(k), mine.get(k)) for k in mine if mine.get(k) != theirs.get(k)}
    grows = hasattr(model, "grow_from_") and diff and set(diff) <= {"num_layers", "e_dim", "self_condition"}
    if grows:
        try:
            grown = model.grow_from_(src)
        except GeodiffValueError as err:
            raise GeodiffError(f"init_from: {err}") from None
        said = []
        if grown["new_layers"]:
            said.append(f"{grown['new_layers']} new layer(s) on top starting as the identity")
        if grown["edge_copies"] > 1:
            said.append(f"each of its {theirs['e_dim']} edge channels copied {grown['edge_copies']} times")
        if grown.get("self_condition"):
            said.append("self-conditioning inputs added (starting at zero)")
        print(f"init_from: {theirs['num_layers']} trained layers from {path.parent}, " + ", ".join(said))
        return
    if diff:
        raise GeodiffError(f"init_from: another architecture (exported, wanted): {diff}")
    model.load_state_dict(src.state_dict())


def model_with_ema(model, ema_decay: float, init_from: str | os.PathLike | None):
    """Warm start ``model`` from ``init_from`` (when given) and make its EMA copy: the warm-up EMA for a
    fresh model, the plain decay for a warm start. Returns the EMA model and the parent's training record."""
    parent = warm_start(model, init_from)
    return ema_model(model, ema_decay, warmup=not init_from), parent


def warm_start(model, init_from: str | os.PathLike | None) -> dict | None:
    """Load ``init_from``'s weights into ``model`` (nothing when it is empty) and return that export's
    training record, read now because this run's export may overwrite the folder it started from."""
    if not init_from:
        return None
    load_exported_weights(model, init_from)
    return read_training_record(init_from)


def read_training_record(directory: str | os.PathLike) -> dict | None:
    """The ``training`` record of an exported model folder (its ``<family>.json``), or None if it has none."""
    try:
        folder = resolve_checkpoint(directory)
    except GeodiffError:
        return None
    for path in sorted(folder.glob("*.json")):
        try:
            meta = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(meta, dict) and "family" in meta and isinstance(meta.get("training"), dict):
            return meta["training"]
    return None


def record_stages(record: dict) -> list[dict]:
    """The stages of a ``training`` record, oldest first: its ``stages`` list, or the record itself for a
    model trained in one run."""
    return record.get("stages") or [{k: v for k, v in record.items() if k != "stages"}]


# what a lineage keeps at its top level besides the totals (everything else describes one stage)
_SHARED = ("data",)


def training_record(global_step: int, epoch: int, extra: dict | None, parent: dict | None) -> dict:
    """The ``training`` record of an export: this run's steps, epochs and ``extra`` (command, hardware, wall
    time, final validation loss), and, for a run warm-started from another export (``module.init_from``),
    the lineage: ``stages`` lists every earlier stage and this one, and ``global_step`` / ``epoch`` are the
    totals, so a model trained over several sessions says exactly how it was made."""
    stage = {"global_step": global_step, "epoch": epoch, **(extra or {})}
    if parent is None:
        return stage
    stages = [*record_stages(parent), stage]
    record = {k: v for k, v in parent.items() if k in _SHARED}
    record["global_step"] = sum(int(s.get("global_step", 0)) for s in stages)
    record["epoch"] = sum(int(s.get("epoch", 0)) for s in stages)
    commands = [s.get("command") for s in stages]
    if all(commands):
        record["command"] = "  THEN  ".join(commands)
    times = [s.get("wall_time") for s in stages]
    if all(times):
        record["wall_time"] = " + ".join(str(t) for t in times)
    record["stages"] = stages
    return record
