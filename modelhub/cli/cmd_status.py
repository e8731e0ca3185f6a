"""`dlv status`."""
from __future__ import annotations

from .common import repo_of
from .ui import human_bytes

HELP = "show what the next commit takes (staged files), the models' latest versions and warnings"
DESCRIPTION = """Examples:
  dlv status
  dlv reset notes.md        # unstage a file (or: dlv add --undo notes.md)
Cheap checks only; `dlv fsck` verifies the stored data."""


def configure(p) -> None:
    pass


def run(args, ui) -> int:
    st = repo_of(args).status()
    if ui.json_mode:
        ui.json(st.to_dict())
        return 0
    ui.print(f"repository {st.root}")
    if st.staged:
        ui.print("staged for the next commit (`dlv reset PATH` unstages):")
        for f in st.staged:
            note = "" if f.state == "staged" else f"  [{f.state} since staged]"
            ui.print(f"  {f.path} ({human_bytes(f.size)}){note}")
    else:
        ui.print("nothing staged (`dlv add FILE` stages files for the next commit)")
    if st.models:
        ui.print(f"{len(st.models)} model(s), {st.n_tags} tag(s):")
        for m in st.models:
            ui.print(f"  {m.name}@{m.latest_seq}  {m.latest_id[:12]}  ({m.n_versions} version(s))")
    else:
        ui.print("no versions yet (`dlv commit` makes the first)")
    for w in st.warnings:
        ui.warn(f"warning: {w}")
    return 0
