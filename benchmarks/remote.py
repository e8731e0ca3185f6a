"""Sharing cost: `dlv publish` of ten fine-tuned versions of one base (only the head changes)
versus uploading a full safetensors file per version (a plain bucket / MLflow artifact store),
and the time to pull one version into an empty repository. Prints JSON.

    python benchmarks/remote.py            # 4 x 1024^2 backbone (~16 MiB of float32)
    python benchmarks/remote.py --quick    # 4 x 256^2 backbone, for CI
    python benchmarks/remote.py --backend s3   # against a moto S3 server on 127.0.0.1
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

import modelhub
from modelhub.remote import open_remote, publish, pull
from modelhub.tensorio import save_safetensors


def make_model(width: int, n_classes: int = 10) -> nn.Module:
    layers: list[nn.Module] = []
    for _ in range(4):
        layers += [nn.Linear(width, width), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(width, n_classes))


def start_moto() -> tuple[object, str]:
    from moto.server import ThreadedMotoServer
    import boto3

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench",
                      AWS_DEFAULT_REGION="us-east-1", AWS_ENDPOINT_URL=endpoint)
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="bench")
    return server, endpoint


def put_plain(url_root: str, name: str, path: Path, backend: str) -> None:
    """What a user of a plain bucket does: upload the whole file."""
    if backend == "folder":
        dst = Path(url_root) / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, dst)
    else:
        import fsspec
        fsspec.filesystem("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"]).put_file(str(path), f"bench/plain/{name}")


def get_plain(url_root: str, name: str, backend: str) -> dict:
    """Download one whole file and load it (the plain-bucket side of a pull)."""
    from safetensors.torch import load as load_bytes
    if backend == "folder":
        data = (Path(url_root) / name).read_bytes()
    else:
        import fsspec
        data = fsspec.filesystem("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"]).cat_file(f"bench/plain/{name}")
    return load_bytes(data)


def run(width: int, n_ft: int, backend: str) -> dict:
    torch.manual_seed(0)
    tmp = Path(tempfile.mkdtemp(prefix="dlv-bench-remote-"))
    server = None
    try:
        if backend == "s3":
            server, _ = start_moto()
            hub, plain_root = "s3://bench/hub", "s3://bench/plain"
        else:
            hub, plain_root = str(tmp / "hub"), str(tmp / "plain")
        src = modelhub.init_repo(tmp / "src")
        model = make_model(width)
        base = src.commit(model, name="ft", message="base")
        versions = []
        files: list[Path] = []
        for i in range(n_ft):
            with torch.no_grad():  # fine-tuning the head only: the backbone stays bit-identical
                head = model[-1]
                head.weight.add_(torch.randn_like(head.weight) * 0.01)
                head.bias.add_(torch.randn_like(head.bias) * 0.01)
            versions.append(src.commit(model, name="ft", message=f"head {i}", parent=base.id,
                                       metrics={"acc": 0.5 + i / 100}))
            f = tmp / f"ft{i}.safetensors"
            save_safetensors(f, {k: v.clone() for k, v in model.state_dict().items()})
            files.append(f)

        t0 = time.perf_counter()
        rep = publish(src, open_remote(src, hub), [v.id for v in versions])
        publish_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        for i, f in enumerate(files):
            put_plain(plain_root, f.name, f, backend)
        plain_s = time.perf_counter() - t0
        plain_bytes = sum(f.stat().st_size for f in files)

        dst = modelhub.init_repo(tmp / "dst")
        t0 = time.perf_counter()
        got = pull(dst, open_remote(dst, hub), versions[-1].id)
        pull_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        again = pull(dst, open_remote(dst, hub), versions[0].id)  # a sibling: only its head moves
        pull_sibling_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        plain_state = get_plain(plain_root, files[-1].name, backend)
        plain_pull_s = time.perf_counter() - t0
        ok = all(torch.equal(a, b) for a, b in zip(dst.checkout(versions[-1].id).state_dict.values(),
                                                     src.checkout(versions[-1].id).state_dict.values()))
        n_params = sum(p.numel() for p in model.parameters())
        return {
            "backend": backend, "width": width, "params": n_params, "fine_tuned_versions": n_ft,
            "publish": {"versions_sent": len(rep.version_ids), "blob_bytes": rep.bytes_sent,
                        "catalog_segment_bytes": rep.segment_bytes, "bytes_sent": rep.total_bytes,
                        "seconds": round(publish_s, 3)},
            "plain_safetensors": {"files": len(files), "bytes_sent": plain_bytes, "seconds": round(plain_s, 3)},
            "bytes_ratio_plain_over_publish": round(plain_bytes / rep.total_bytes, 2),
            "pull_one_version": {"versions": len(got.pulled), "bytes_fetched": got.bytes_fetched,
                                 "seconds": round(pull_s, 3), "bit_exact": ok},
            "plain_download_one_file": {"bytes_fetched": files[-1].stat().st_size, "seconds": round(plain_pull_s, 3),
                                        "tensors": len(plain_state)},
            "pull_sibling_after": {"bytes_fetched": again.bytes_fetched, "blobs_reused": again.blobs_reused,
                                   "seconds": round(pull_sibling_s, 3)},
        }
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small model (CI)")
    ap.add_argument("--backend", choices=["folder", "s3"], default="folder")
    ap.add_argument("--versions", type=int, default=10)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    print(json.dumps(run(256 if args.quick else 1024, args.versions, args.backend), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
