"""Routing trace files: per MoE layer, each token's expert ids and gate weights.

Two formats (full description in ``README.md`` beside this module):

**JSONL** -- line 1 is a header, then one line per MoE layer::

    {"format": "moeaccel-trace", "version": 1, "tokens": 16, "experts": 4, "top_k": 2}
    {"layer": 1, "experts": [[0, 3], [2], ...], "gates": [[0.41, 0.22], [0.9], ...]}

``experts[t]`` lists token ``t``'s experts (0 to ``top_k`` distinct ids; ``-1`` or a shorter
list means fewer real experts, e.g. a null expert was chosen); ``gates[t]`` has the same length.

**NPZ** -- arrays ``layers`` (L,) int, ``experts`` (L, tokens, top_k) int with ``-1`` padding,
``gates`` (L, tokens, top_k) float.

Loading checks the trace against the design config (tokens, experts, top_k, MoE layers) and
raises a :class:`~moeaccel.errors.UserError` naming the file, the line or array, and the problem.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from moeaccel.config import DesignConfig
from moeaccel.errors import UserError

FORMAT = "moeaccel-trace"
VERSION = 1

#: per MoE layer: (experts (tokens, top_k) int32 with -1 padding, gates (tokens, top_k) float32)
LayerRouting = tuple[np.ndarray, np.ndarray]


def load(path: str | Path, cfg: DesignConfig) -> dict[int, LayerRouting]:
    """Read and validate a trace; returns routing by MoE layer index."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such trace file")
    if path.suffix.lower() == ".npz":
        return _load_npz(path, cfg)
    return _load_jsonl(path, cfg)


def save(path: str | Path, cfg: DesignConfig, routing: dict[int, LayerRouting]) -> None:
    """Write ``routing`` as a trace (format chosen by the suffix, ``.jsonl`` or ``.npz``)."""
    path = Path(path)
    layers = sorted(routing)
    if path.suffix.lower() == ".npz":
        np.savez_compressed(path, layers=np.array(layers, dtype=np.int32),
                            experts=np.stack([routing[l][0] for l in layers]),
                            gates=np.stack([routing[l][1] for l in layers]))
        return
    m = cfg.model
    lines = [json.dumps({"format": FORMAT, "version": VERSION, "tokens": m.tokens,
                         "experts": m.experts, "top_k": m.top_k})]
    for layer in layers:
        experts, gates = routing[layer]
        keep = experts >= 0
        lines.append(json.dumps({
            "layer": layer,
            "experts": [row[k].tolist() for row, k in zip(experts, keep)],
            "gates": [[round(float(g), 6) for g in row[k]] for row, k in zip(gates, keep)],
        }))
    path.write_text("\n".join(lines) + "\n")


def _fail(where: str, problem: str) -> None:
    raise UserError(f"{where}: {problem}")


def _check_layer(where: str, cfg: DesignConfig, layer: object, seen: dict) -> int:
    if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)):
        _fail(where, f"layer must be an integer, got {layer!r}")
    layer = int(layer)
    if layer not in cfg.model.moe_layers:
        _fail(where, f"layer {layer} is not an MoE layer of {cfg.name} "
                     f"(MoE layers: {list(cfg.model.moe_layers)})")
    if layer in seen:
        _fail(where, f"layer {layer} appears twice")
    return layer


def _check_routing(where: str, cfg: DesignConfig, experts: np.ndarray, gates: np.ndarray) -> None:
    """Value checks shared by both formats on padded ``(tokens, top_k)`` arrays."""
    m = cfg.model
    bad = (experts < -1) | (experts >= m.experts)
    if bad.any():
        t, k = map(int, np.argwhere(bad)[0])
        _fail(where, f"token {t}: expert id {int(experts[t, k])} outside 0..{m.experts - 1}")
    ordered = np.sort(np.where(experts < 0, -1 - np.arange(experts.shape[1]), experts), axis=1)
    dup = (ordered[:, 1:] == ordered[:, :-1]).any(axis=1)
    if dup.any():
        _fail(where, f"token {int(np.argmax(dup))}: repeats an expert id")
    bad_gate = ~np.isfinite(gates) | (gates < 0)
    if bad_gate.any():
        t = int(np.argwhere(bad_gate)[0][0])
        _fail(where, f"token {t}: gate weights must be finite and >= 0")


def _load_jsonl(path: Path, cfg: DesignConfig) -> dict[int, LayerRouting]:
    m = cfg.model
    lines = path.read_text().splitlines()
    records = []
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            record = json.loads(text)
        except json.JSONDecodeError as exc:
            _fail(f"{path}:{number}", f"not valid JSON ({exc.msg})")
        if not isinstance(record, dict):
            _fail(f"{path}:{number}", "each line must be a JSON object")
        records.append((number, record))
    if not records:
        _fail(str(path), "empty trace")
    number, header = records[0]
    where = f"{path}:{number}"
    if header.get("format") != FORMAT or header.get("version") != VERSION:
        _fail(where, f'first line must be the header {{"format": "{FORMAT}", "version": {VERSION}, ...}}')
    for key, want in (("tokens", m.tokens), ("experts", m.experts), ("top_k", m.top_k)):
        if header.get(key) != want:
            _fail(where, f"header {key} is {header.get(key)!r} but the config {cfg.name} has {want}")
    routing: dict[int, LayerRouting] = {}
    for number, record in records[1:]:
        where = f"{path}:{number}"
        extra = set(record) - {"layer", "experts", "gates"}
        if extra or "layer" not in record or "experts" not in record or "gates" not in record:
            _fail(where, "a layer line has exactly the keys layer, experts, gates")
        layer = _check_layer(where, cfg, record["layer"], routing)
        experts = np.full((m.tokens, m.top_k), -1, dtype=np.int32)
        gates = np.zeros((m.tokens, m.top_k), dtype=np.float32)
        rows_e, rows_g = record["experts"], record["gates"]
        for name, rows in (("experts", rows_e), ("gates", rows_g)):
            if not isinstance(rows, list) or len(rows) != m.tokens:
                _fail(where, f"{name} must be a list of {m.tokens} lists (one per token)")
        for t, (ids, gs) in enumerate(zip(rows_e, rows_g)):
            if not isinstance(ids, list) or not isinstance(gs, list) or len(ids) != len(gs):
                _fail(where, f"token {t}: experts and gates must be lists of the same length")
            if len(ids) > m.top_k:
                _fail(where, f"token {t}: {len(ids)} experts exceed top_k {m.top_k}")
            if not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
                _fail(where, f"token {t}: expert ids must be integers")
            if not all(isinstance(g, (int, float)) and not isinstance(g, bool) for g in gs):
                _fail(where, f"token {t}: gate weights must be numbers")
            experts[t, :len(ids)] = ids
            gates[t, :len(gs)] = gs
        _check_routing(where, cfg, experts, gates)
        routing[layer] = (experts, gates)
    return routing


def _load_npz(path: Path, cfg: DesignConfig) -> dict[int, LayerRouting]:
    m = cfg.model
    try:
        data = np.load(path, allow_pickle=False)
        arrays = {k: data[k] for k in data.files}
    except Exception as exc:  # numpy raises several types for a corrupt archive
        _fail(str(path), f"not a readable NPZ archive ({exc})")
    for key in ("layers", "experts", "gates"):
        if key not in arrays:
            _fail(str(path), f"missing array {key!r} (need layers, experts, gates)")
    layers, experts, gates = arrays["layers"], arrays["experts"], arrays["gates"]
    if layers.ndim != 1 or not np.issubdtype(layers.dtype, np.integer):
        _fail(f"{path}: layers", f"must be a 1-D integer array, got {layers.dtype} {layers.shape}")
    shape = (len(layers), m.tokens, m.top_k)
    if experts.shape != shape or not np.issubdtype(experts.dtype, np.integer):
        _fail(f"{path}: experts", f"must be an integer array of shape {shape} (layers, tokens, "
                                  f"top_k), got {experts.dtype} {experts.shape}")
    if gates.shape != shape or not np.issubdtype(gates.dtype, np.floating):
        _fail(f"{path}: gates", f"must be a float array of shape {shape}, got {gates.dtype} {gates.shape}")
    routing: dict[int, LayerRouting] = {}
    for i, layer in enumerate(layers):
        where = f"{path}: layers[{i}]"
        layer = _check_layer(where, cfg, layer, routing)
        e, g = experts[i].astype(np.int32), gates[i].astype(np.float32)
        _check_routing(where, cfg, e, g)
        routing[layer] = (e, g)
    return routing
