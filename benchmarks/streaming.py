"""Streaming commit and cold checkout of real pretrained networks, against ZipNN and safetensors (issue 17).

What a user does, the way a user does it: the network is a safetensors file on disk;
``dlv commit FILE`` and ``dlv checkout NAME -o OUT.safetensors`` run as fresh processes (start-up
included; peak RSS from GNU time), and in-process through the public API (start-up excluded).
Baselines on the same bytes, in the same run, interleaved, median of ``--repeats`` (each repeat's
figures are reported too; ``dlv`` and the API take turns going first, so that whatever order effect
the memory warming below leaves falls on both alike):

  zipnn_compress          ZipNN (its default threads) on the file's bytes, already in memory;
  zipnn_compress_write    the same, then the compressed file written and fsynced (what storing it costs);
  zipnn_decompress        ZipNN decompressing that;
  safetensors_load_save   ``safetensors.torch.load_file`` + ``save_file`` of the same model (a plain copy
                          through memory, what a checkout without compression would cost);
  disk_write              the model's bytes written to a new file in 4 MB writes past the page cache
                          (``O_DIRECT``, through the cache where refused) and fsynced, like ``dd oflag=direct``:
                          what this disk takes, the ceiling of any durable checkout (a commit writes the
                          compressed bytes only). On a virtual disk with a rate limit it moves from run to run.

Workloads (real weights from installed packages; nothing is downloaded):
  minilm-fp32      all-MiniLM-L6-v2 as shipped (float32, 90 MB);
  minilm-bf16      the same cast to bfloat16 (45 MB);
  minilm-fp16      the same cast to float16 (45 MB);
  efficientnet     EfficientNet-Lite0, ImageNet weights (float32, 19 MB);
  synthetic-large  (``--large-gb G``) a sharded bf16 transformer checkpoint of random N(0, 0.02) weights
                   (benchmarks/archive.py's make_checkpoint): a SMOKE TEST of scale, not a real network.

Before every timed step, baselines included, twice the model's bytes + 256 MB of memory are touched and
given back (benchmarks/warm_memory.py: on a VM that hands freed memory back to its host, a step would
otherwise pay for its pages or not according to what ran before it; ``--no-warm`` turns it off).
Before timing, modelhub's modules are compiled to bytecode, as ``pip install`` compiles them
(``compile_package``). CPU seconds per GB are reported next to wall times: on a machine shared with other work they are the
steadier figure. Every checkout is checked byte-identical to the committed file.

    python benchmarks/streaming.py [--repeats 3] [--large-gb 1.2 [--large-repeats 3]] [--workloads minilm-fp32,...] [--out r.json]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from report import print_report
from warm_memory import warm


def _net(name: str):
    import context_trajectories as ct

    return ct._net(name)


def make_file(workload: str, folder: Path) -> tuple[Path, str]:
    """(the weights file or sharded folder, its dtype for ZipNN)."""
    import torch
    from safetensors.torch import load_file, save_file

    if workload == "minilm-fp32":
        return _net("minilm").model_dir() / "model.safetensors", "float32"
    if workload == "minilm-bf16":
        sd = load_file(_net("minilm").model_dir() / "model.safetensors")
        out = folder / "minilm-bf16.safetensors"
        save_file({k: v.to(torch.bfloat16) for k, v in sd.items()}, out)
        return out, "bfloat16"
    if workload == "minilm-fp16":
        sd = load_file(_net("minilm").model_dir() / "model.safetensors")
        out = folder / "minilm-fp16.safetensors"
        save_file({k: v.to(torch.float16) if v.is_floating_point() else v for k, v in sd.items()}, out)
        return out, "float16"
    if workload == "efficientnet":
        sd = {k: v.contiguous() for k, v in _net("efficientnet_lite0").build().state_dict().items() if v.is_floating_point()}
        out = folder / "efficientnet-lite0.safetensors"
        save_file(sd, out)
        return out, "float32"
    raise SystemExit(f"unknown workload {workload!r}")


def _files(path: Path) -> list[Path]:
    return sorted(path.glob("*.safetensors")) if path.is_dir() else [path]


# Whether memory is warmed before every timed step (warm_memory.py; off with --no-warm), and how many
# bytes: what a step of the current workload may allocate, the model twice (input and output) and some.
WARM = True
WARM_BYTES = 0


def warm_memory() -> None:
    warm(WARM_BYTES)


def _timed_subprocess(argv: list[str], env: dict) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds, peak RSS bytes) of a command, from GNU time's own child."""
    warm_memory()
    with tempfile.NamedTemporaryFile("r", suffix=".time") as out:
        t = time.perf_counter()
        # cwd: `python -m` puts the working folder first on sys.path, which must not shadow PYTHONPATH's modelhub
        proc = subprocess.run(["/usr/bin/time", "-f", "%M %U %S", "-o", out.name, *argv], env=env,
                              cwd=tempfile.gettempdir(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wall = time.perf_counter() - t
        if proc.returncode != 0:
            raise RuntimeError(f"{argv} failed: {proc.stderr.decode()[-2000:]}")
        rss_kb, user, system = out.read().split()[-3:]
    return wall, float(user) + float(system), int(rss_kb) * 1024


def disk_write(folder: Path, nbytes: int) -> None:
    """``nbytes`` written to a new file in ``folder`` in 4 MB blocks past the page cache and fsynced."""
    import mmap

    block = 4 << 20
    buf = mmap.mmap(-1, block)   # page-aligned, as O_DIRECT wants
    buf.write(os.urandom(block))
    path = folder / "disk-write.bin"
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    try:
        fd = os.open(path, flags | getattr(os, "O_DIRECT", 0))
    except OSError:   # tmpfs: through the cache
        fd = os.open(path, flags)
    try:
        left = -(-nbytes // block) * block
        while left:
            left -= os.write(fd, buf)
        os.fsync(fd)
    finally:
        os.close(fd)
        buf.close()
        path.unlink()


class Clock:
    def __init__(self) -> None:
        self.wall: dict[str, list[float]] = {}
        self.cpu: dict[str, list[float]] = {}

    def add(self, key: str, wall: float, cpu: float) -> None:
        self.wall.setdefault(key, []).append(wall)
        self.cpu.setdefault(key, []).append(cpu)

    def timed(self, key: str, fn):
        warm_memory()
        t, c = time.perf_counter(), time.process_time()
        out = fn()
        self.add(key, time.perf_counter() - t, time.process_time() - c)
        return out


def run_workload(name: str, src: Path, dtype: str, tmp: Path, repeats: int) -> dict:
    import modelhub
    from modelhub.weightfiles import open_weights
    from safetensors.torch import load_file, save_file
    from zipnn import ZipNN

    files = _files(src)
    nbytes = sum(f.stat().st_size for f in files)
    gb = nbytes / 1e9
    global WARM_BYTES
    WARM_BYTES = 2 * nbytes + (256 << 20) if WARM else 0
    env = dict(os.environ, DLV_AUTHOR="bench", DLV_HOT_COPIES="0", PYTHONPATH=os.pathsep.join(
        [str(Path(modelhub.__file__).resolve().parents[1])] + [p for p in sys.path if p]))
    os.environ["DLV_HOT_COPIES"] = "0"   # cold checkouts in-process too
    dlv = [sys.executable, "-m", "modelhub"]
    clock = Clock()
    rss: dict[str, int] = {}
    zipnn_bytes = 0
    stored = 0
    for i in range(repeats):
        # ZipNN, file by file (a sharded checkpoint compresses shard by shard); one figure per repeat,
        # the files' times summed, as dlv's figures are for all of them
        zipped = []
        totals = Clock()
        for f in files:
            data = f.read_bytes()
            z = ZipNN(bytearray_dtype=dtype, input_format="byte")
            copy = bytearray(data)   # it overwrites its input; the copy is not on its clock
            blob = totals.timed("zipnn_compress", lambda: z.compress(copy))
            zipped.append((blob, len(data)))
            out = tmp / f"z{i}.znn"

            def compress_write():
                b = ZipNN(bytearray_dtype=dtype, input_format="byte").compress(copy)
                with open(out, "wb") as fh:
                    fh.write(b)
                    fh.flush()
                    os.fsync(fh.fileno())
            copy = bytearray(data)
            totals.timed("zipnn_compress_write", compress_write)
            out.unlink()
            totals.timed("zipnn_decompress", lambda: ZipNN(bytearray_dtype=dtype, input_format="byte").decompress(blob))
            del copy
        for key in totals.wall:
            clock.add(key, sum(totals.wall[key]), sum(totals.cpu[key]))
        zipnn_bytes = sum(len(b) for b, _ in zipped)

        clock.timed("disk_write", lambda: disk_write(tmp, nbytes))

        def through_dlv() -> None:   # as fresh processes (start-up included)
            nonlocal stored
            repo = tmp / f"repo{i}"
            modelhub.init_repo(repo)
            wall, cpu, rss["commit"] = _timed_subprocess(dlv + ["commit", str(src), "--name", "m", "-m", "c", "--repo", str(repo)], env)
            clock.add("dlv_commit", wall, cpu)
            out = tmp / f"out{i}" / ("m" if src.is_dir() else "m.safetensors")
            out.parent.mkdir()
            wall, cpu, rss["checkout"] = _timed_subprocess(dlv + ["checkout", "m", "-o", str(out), "--repo", str(repo)], env)
            clock.add("dlv_checkout_cold", wall, cpu)
            for f in files:
                got = out / f.name if src.is_dir() else out
                assert got.read_bytes() == f.read_bytes(), f"{got} differs after checkout"
            stored = modelhub.Repo(repo).stats().stored_bytes
            shutil.rmtree(out.parent)
            shutil.rmtree(repo)

        def through_api() -> None:   # in this process (start-up excluded)
            repo2 = modelhub.init_repo(tmp / f"api{i}")
            clock.timed("api_commit", lambda: repo2.commit(str(src), name="m", message="c"))
            api_out = tmp / f"api-out{i}" if src.is_dir() else tmp / f"api-out{i}.safetensors"
            clock.timed("api_checkout_cold", lambda: repo2.write_checkout("m", api_out))
            shutil.rmtree(api_out) if api_out.is_dir() else api_out.unlink()
            shutil.rmtree(tmp / f"api{i}")

        # alternated: unwarmed (--no-warm), whichever ran first paid for the memory the other then
        # reused (warm_memory.py); warmed, any effect of order left falls on both alike
        for step in ((through_dlv, through_api) if i % 2 == 0 else (through_api, through_dlv)):
            step()

        # safetensors: load every tensor into memory and save them again
        def load_save():
            for k, f in enumerate(files):
                sd = {n: t.clone() for n, t in load_file(f).items()}   # load_file maps: clone reads every byte
                save_file(sd, tmp / f"st{k}.safetensors")
        clock.timed("safetensors_load_save", load_save)
        for p in tmp.glob("st*.safetensors"):
            p.unlink()
    wall = {k: statistics.median(v) for k, v in clock.wall.items()}
    cpu = {k: statistics.median(v) for k, v in clock.cpu.items()}
    idle_wall, _, idle_rss = _timed_subprocess([sys.executable, "-m", "modelhub", "--version"], env)
    with open_weights(src) as weights:
        largest = weights.largest_bytes
    return {
        "workload": name, "bytes": nbytes, "files": len(files), "largest_tensor_bytes": largest,
        "synthetic": name.startswith("synthetic"),
        "MBps": {k: round(nbytes / 1e6 / v, 1) for k, v in wall.items()},
        "MBps_each_repeat": {k: [round(nbytes / 1e6 / x, 1) for x in v] for k, v in clock.wall.items()},
        "cpu_s_per_GB": {k: round(v / gb, 2) for k, v in cpu.items()},
        "ratios": {
            "dlv_commit / zipnn_compress": round(wall["zipnn_compress"] / wall["dlv_commit"], 3),
            "api_commit / zipnn_compress": round(wall["zipnn_compress"] / wall["api_commit"], 3),
            "api_commit / zipnn_compress_write": round(wall["zipnn_compress_write"] / wall["api_commit"], 3),
            "dlv_commit / zipnn_compress_write": round(wall["zipnn_compress_write"] / wall["dlv_commit"], 3),
            "dlv_checkout_cold / disk_write": round(wall["disk_write"] / wall["dlv_checkout_cold"], 3),
            "dlv_checkout_cold / zipnn_decompress": round(wall["zipnn_decompress"] / wall["dlv_checkout_cold"], 3),
            "api_checkout_cold / zipnn_decompress": round(wall["zipnn_decompress"] / wall["api_checkout_cold"], 3),
            "api_checkout_cold / safetensors_load_save": round(wall["safetensors_load_save"] / wall["api_checkout_cold"], 3),
            "dlv_checkout_cold / safetensors_load_save": round(wall["safetensors_load_save"] / wall["dlv_checkout_cold"], 3),
        },
        "compression": {"dlv_commit": round(nbytes / stored, 4), "zipnn": round(nbytes / zipnn_bytes, 4)},
        "start_up_s (dlv --version)": round(idle_wall, 2),
        "peak_rss_MB": {"commit": round(rss["commit"] / 1e6), "checkout": round(rss["checkout"] / 1e6),
                        "dlv --version": round(idle_rss / 1e6)},
        "targets": {"commit >= 0.75x zipnn compress (dlv, start-up included)": wall["zipnn_compress"] / wall["dlv_commit"] >= 0.75,
                    "commit >= 0.75x zipnn compress (API)": wall["zipnn_compress"] / wall["api_commit"] >= 0.75,
                    "cold checkout >= 1 GB/s (API)": nbytes / wall["api_checkout_cold"] >= 1e9,
                    "cold checkout >= 1 GB/s (dlv, start-up included)": nbytes / wall["dlv_checkout_cold"] >= 1e9},
    }


def compile_package() -> None:
    """Compile modelhub's modules to bytecode first, as ``pip install`` does: where
    PYTHONDONTWRITEBYTECODE is set (these machines set it) and the package is an editable checkout,
    every ``dlv`` process would otherwise compile ~50 modules from source (~60 ms of its start-up),
    which an installed package never does."""
    import compileall

    import modelhub
    import modelhub.storage

    for package in (modelhub, modelhub.storage):
        compileall.compile_dir(str(Path(package.__file__).parent), quiet=1)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workloads", default="minilm-fp32,minilm-bf16,minilm-fp16,efficientnet")
    ap.add_argument("--large-gb", type=float, default=0.0, help="add the synthetic sharded bf16 checkpoint (smoke test)")
    ap.add_argument("--large-repeats", type=int, default=3, help="repeats of the synthetic checkpoint (median, as the others)")
    ap.add_argument("--no-warm", action="store_true", help="time every step without warm_memory() before it")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    global WARM
    WARM = not args.no_warm
    tmp = Path(tempfile.mkdtemp(prefix="mh-streaming-"))
    compile_package()
    report = {"benchmark": "streaming", "cpu_cores": os.cpu_count(), "load_average_at_start": os.getloadavg(),
              "repeats": args.repeats, "memory_warmed_before_each_step": not args.no_warm, "workloads": []}
    try:
        todo = [w for w in args.workloads.split(",") if w]
        for name in todo:
            src, dtype = make_file(name, tmp)
            res = run_workload(name, src, dtype, tmp, args.repeats)
            report["workloads"].append(res)
            print(json.dumps(res), file=sys.stderr, flush=True)
        if args.large_gb:
            import archive

            archive.make_checkpoint(tmp / "ckpt", args.large_gb)
            res = run_workload("synthetic-large", tmp / "ckpt", "bfloat16", tmp, args.large_repeats)
            report["workloads"].append(res)
            print(json.dumps(res), file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    report["load_average_at_end"] = os.getloadavg()
    print_report(report, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
