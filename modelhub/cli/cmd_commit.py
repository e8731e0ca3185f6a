from __future__ import annotations

from pathlib import Path

from ..errors import InputError, WeightsError
from ..repo import load_metrics_file, with_final_values
from .common import load_factory, parse_pairs, parse_value, repo_of

HELP = "commit a model version (weights, network, hparams, metrics, staged files)"
DESCRIPTION = (
    "Commit a new version of model NAME. Weights come from --weights (.safetensors, or .pt read with "
    "torch.load(weights_only=True)), the network from --model FILE.py:Factory (captured with torch.fx), "
    "or both; with neither, the parent's weights are reused. Staged files (dlv add) are attached. "
    "A safetensors PATH (a file, a sharded checkpoint's index JSON, or a folder holding either) is streamed: "
    "tensors are read one at a time from the mapped files, so memory stays near a few tensors."
)


def configure(p) -> None:
    p.add_argument("path", nargs="?", metavar="PATH",
                   help="weights to commit (same as --weights): .safetensors, *.safetensors.index.json, a folder, .pt")
    p.add_argument("-m", "--message", help="what this version is")
    p.add_argument("-F", "--message-file", metavar="FILE", help="read the message from FILE (UTF-8)")
    p.add_argument("--name", required=True, help="model name (new or existing)")
    p.add_argument("--weights", metavar="FILE", help="weights file: .safetensors or .pt/.pth")
    p.add_argument("--model", metavar="FILE.py:FACTORY", help="python file and class/function that builds the network")
    p.add_argument("--parent", action="append", metavar="REF", help="parent version (repeat for merges); default: latest version of NAME")
    p.add_argument("--no-parent", action="store_true", help="start a new lineage even if NAME has versions")
    p.add_argument("--hparam", action="append", metavar="K=V", help="hyperparameter (JSON value or string); repeatable")
    p.add_argument("--metric", action="append", metavar="K=V", help="metric value; repeat a key for a series (steps 0, 1, ...); with --metrics-file, final "
                        "values placed after the file's last step")
    p.add_argument("--metrics-file", metavar="F.jsonl", help='JSON lines: {"name": .., "step": .., "value": ..} or {"step": .., "loss": .., ...}')
    p.add_argument("--author", help="author (default: $DLV_AUTHOR or the user name)")


def run(args, ui) -> int:
    message = _message(args)
    hparams = {k: parse_value(v) for k, v in parse_pairs(args.hparam, "hparam")}
    metrics = _metrics(args)
    repo = repo_of(args)
    # Only an explicit choice is passed on: by default the commit itself takes the model's
    # latest version as the parent, inside its write transaction (no other commit can slip in).
    parent = {} if args.parent is None and not args.no_parent else {"parent": args.parent or ()}
    if args.path is not None:
        if args.weights is not None:
            raise InputError("give the weights once: either PATH or --weights FILE")
        args.weights = args.path
    if not args.model and not args.weights:
        info = repo.commit_parent_weights(name=args.name, message=message, hparams=hparams, metrics=metrics,
                                          author=args.author, progress=ui.progress(), **parent)
    else:
        target, weights_meta = _weights(args)
        info = repo.commit(target, name=args.name, message=message, hparams=hparams, metrics=metrics,
                           author=args.author, weights_meta=weights_meta, inherit_hparams=True,
                           progress=ui.progress(), **parent)
    if ui.json_mode:
        ui.json(info.to_dict())
    else:
        ui.print(f"[{info.ref} {info.short_id}] {info.message.splitlines()[0]}")
    return 0


def _weights(args):
    """What --model and/or --weights name: (an nn.Module or a state dict, the weights file's metadata)."""
    weights_meta = None
    if not args.model:
        return args.weights, None   # a path: the commit streams safetensors and loads .pt files
    model = load_factory(args.model)
    if args.weights:
        from ..tensorio import load_weights_file   # torch: not imported by a commit streamed from a file
        state, weights_meta = load_weights_file(args.weights)
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            detail = " ".join(line.strip() for line in str(exc).splitlines()[1:3])
            raise WeightsError(
                f"{args.weights} does not fit the network of {args.model}: {detail}; "
                "commit weights saved from that architecture"
            ) from None
    return model, weights_meta


def _message(args) -> str:
    if args.message_file:
        raw = Path(args.message_file).read_bytes() if Path(args.message_file).is_file() else None
        if raw is None:
            raise InputError(f"message file {args.message_file} does not exist")
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise InputError(f"message file {args.message_file} is not UTF-8 text; convert it (iconv -t UTF-8)") from None
    if args.message is None:
        raise InputError('a commit needs a message: add -m "what changed"')
    return args.message


def _metrics(args) -> dict[str, list[tuple[int, float]]]:
    """--metric values (steps 0, 1, ... per name), after the --metrics-file's last step when there is one.

    A --metric has no step: next to a file of per-step points it is a final value
    (e.g. the accuracy measured after training), not the file's step 0.
    """
    values: dict[str, list[float]] = {}
    for key, value in parse_pairs(args.metric, "metric"):
        try:
            values.setdefault(key, []).append(float(value))
        except ValueError:
            raise InputError(f"metric {key}={value!r} is not a number") from None
    series = load_metrics_file(args.metrics_file) if args.metrics_file else {}
    return with_final_values(series, values)
