from __future__ import annotations

from .common import repo_of

HELP = "compare two versions: layers, parameters, hyperparameters, metrics"


def configure(p) -> None:
    p.add_argument("a", metavar="REF_A")
    p.add_argument("b", metavar="REF_B")
    p.add_argument("--all", action="store_true", help="also list what is unchanged")


def run(args, ui) -> int:
    d = repo_of(args).diff(args.a, args.b, include_same=args.all)
    if ui.json_mode:
        ui.json(d.to_dict() | {"identical": d.identical})
        return 0
    ui.print(f"--- {d.a.ref} {d.a.short_id}")
    ui.print(f"+++ {d.b.ref} {d.b.short_id}")
    if not (d.layers or d.tensors or d.hparams or d.metrics):
        ui.print("no differences")
        return 0
    if d.layers:
        ui.print("\nlayers")
        ui.table(["layer", "status", d.a.ref, d.b.ref], [(c.name, c.status, c.old, c.new) for c in d.layers])
    if d.tensors:
        ui.print("\nparameters")
        ui.table(
            ["tensor", "status", "rel L2 change", "changed values", "shape"],
            [(t.name, t.status, t.rel_l2, None if t.frac_changed is None else f"{100 * t.frac_changed:.1f}%",
              _shape(t.old_shape, t.new_shape)) for t in d.tensors],
            align_right=(2, 3),
        )
    for title, rows in (("hyperparameters", d.hparams), ("metrics (latest)", d.metrics)):
        if rows:
            ui.print(f"\n{title}")
            ui.table(["key", "status", d.a.ref, d.b.ref], [(c.key, c.status, c.old, c.new) for c in rows])
    return 0


def _shape(a, b) -> str:
    fa = "x".join(map(str, a)) if a is not None else "-"
    fb = "x".join(map(str, b)) if b is not None else "-"
    return fa if fa == fb else f"{fa} -> {fb}"
