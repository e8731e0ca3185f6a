from __future__ import annotations

from .common import repo_of
from .ui import fmt, human_bytes

HELP = "describe a version: network, parameters, hyperparameters, metrics, files"


def configure(p) -> None:
    p.add_argument("ref", metavar="REF", help="id prefix, NAME or NAME@N")


def run(args, ui) -> int:
    repo = repo_of(args)
    d = repo.desc(args.ref)
    run = repo.run_of(d.version.id) if d.version.run_status else None
    if ui.json_mode:
        ui.json(d.to_dict() | ({"run": run.to_dict()} if run is not None else {}))
        return 0
    v = d.version
    ui.kv([
        ("version", f"{v.ref}  {v.id}"),
        ("message", v.message),
        ("author", v.author),
        ("created", v.created_at),
        ("parents", ", ".join(p[:12] for p in v.parents) or "-"),
        ("children", ", ".join(c[:12] for c in d.children) or "-"),
        ("parameters", f"{v.n_params:,} in {v.n_tensors} tensors ({human_bytes(v.logical_bytes)})"),
        ("snapshots", d.n_snapshots),
        ("network", "none stored" if d.traced is None else
         f"{len(d.layers)} layers, " + ("traced, rebuildable" if d.rebuildable else
                                         "traced" if d.traced else "module tree (not rebuildable)")),
    ] + (_run_rows(run) if run is not None else []))
    if d.layers:
        ui.print()
        ui.table(["layer", "type", "params", "attributes"],
                 [(l.name, l.op, l.n_params, _attrs(l.attrs)) for l in d.layers], align_right=(2,))
    ui.print()
    ui.table(["tensor", "dtype", "shape", "numel"],
             [(t.name, t.dtype, "x".join(map(str, t.shape)) or "scalar", t.numel) for t in d.tensors], align_right=(3,))
    if d.hparams:
        ui.print()
        ui.table(["hparam", "value"], sorted(d.hparams.items()))
    if d.metrics:
        ui.print()
        ui.table(["metric", "last", "step", "min", "max", "points"],
                 [(m.name, m.last, m.last_step, m.min, m.max, m.n_points) for m in d.metrics], align_right=(1, 2, 3, 4, 5))
    if d.files:
        ui.print()
        ui.table(["file", "size"], [(f.path, human_bytes(f.size)) for f in d.files])
    return 0


def _run_rows(run) -> list[tuple[str, str]]:
    """Where the version came from when a run committed it: its status and the environment it ran in."""
    status = f"{run.status} (run {run.short_id}" + (f", last step {run.last_step}" if run.last_step is not None else "") + ")"
    if run.status_message:
        status += f": {run.status_message}"
    env = run.environment or {}
    parts = [f"{k} {env[k]}" for k in ("torch", "device", "python") if env.get(k)]
    git = env.get("git_commit") or env.get("git")
    if git:
        parts.append(f"git {str(git)[:12]}" + (" (dirty)" if env.get("git_dirty") else ""))
    return [("run", status), ("environment", ", ".join(parts) or "-")]


# Shape-defining attributes first, so a truncated line still says what the layer is.
_FIRST = ("in_channels", "out_channels", "in_features", "out_features", "kernel_size", "stride", "padding",
          "num_features", "output_size", "p", "groups")


def _attrs(attrs: dict) -> str:
    keys = [k for k in _FIRST if k in attrs] + sorted(k for k in attrs if k not in _FIRST)
    text = ", ".join(f"{k}={fmt(attrs[k])}" for k in keys)
    return text if len(text) <= 80 else text[:77] + "..."
