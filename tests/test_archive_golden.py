"""Golden encoded fixtures: a format change cannot slip in unnoticed.

tests/golden/archive/ holds, per case, the raw tensor, the manifest and the
blobs written when the fixture was made. The tests check that (1) the
checked-in blobs still decode bit-exactly (old repositories stay readable),
and (2) encoding the same tensor today gives the same manifest and the same
*decompressed* segments (zstd's compressed bytes may legitimately differ
between zstd releases, the segment contents may not). A case whose encoder has
since chosen a better segment coding says so in its ``now`` entry.
Write the fixtures of new cases with: python tests/test_archive_golden.py --regen
(``--regen --all`` rewrites every case: deliberately only, old fixtures keep old object names).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from modelhub.storage.objects import content_hash, name_matches
from modelhub.storage.segmented import SegmentedConfig, decompress_segment, segment_codings, segment_lengths
from modelhub.storage.tensors import decode_tensor, encode_tensor

GOLDEN = Path(__file__).parent / "golden" / "archive"


def cases() -> dict:
    rng = np.random.default_rng(20240601)
    w = (rng.standard_normal(48) * 0.05).astype("<f4")
    w[:6] = [np.nan, np.inf, -0.0, 1e-45, -1.5, 0.0]
    w2 = (w + (rng.standard_normal(48) * 1e-3).astype("<f4")).astype("<f4")
    bf16 = (w.view("<u4") >> np.uint32(16)).astype("<u2")
    ints = np.arange(-20, 20, dtype="<i8")
    # packed planes (storage/planepack.py) need segments of 4096 elements or more
    big = (rng.standard_normal(6000) * 0.03).astype("<f4")
    big_bf16 = (big.view("<u4") >> np.uint32(16)).astype("<u2")
    step = (big + (rng.standard_normal(6000) * 0.002).astype("<f4")).astype("<f4")
    step_bf16 = (step.view("<u4") >> np.uint32(16)).astype("<u2")
    return {
        "f32_whole": dict(raw=w.tobytes(), dtype="float32", shape=[6, 8], kw={}),
        "f32_osub": dict(raw=w2.tobytes(), dtype="float32", shape=[6, 8],
                         kw=dict(base_raw=w.tobytes(), base_hash="0" * 64, config=SegmentedConfig(delta="osub"))),
        "f32_xor": dict(raw=w2.tobytes(), dtype="float32", shape=[6, 8],
                        kw=dict(base_raw=w.tobytes(), base_hash="0" * 64, config=SegmentedConfig(delta="xor"))),
        "bf16_whole": dict(raw=bf16.tobytes(), dtype="bfloat16", shape=[48], kw={}),
        "i64_whole": dict(raw=ints.tobytes(), dtype="int64", shape=[40], kw={}),
        # written before bits7 existed: its top mantissa bits were a zstd frame then (still read)
        "bf16_commit_pack4": dict(raw=big_bf16.tobytes(), dtype="bfloat16", shape=[6000],
                                  kw=dict(config=SegmentedConfig(strategy="level", level=1)),
                                  now=dict(codings=["pack4", "raw", "bits7"])),
        "f32_commit_bits7": dict(raw=big.tobytes(), dtype="float32", shape=[6000],
                                 kw=dict(config=SegmentedConfig(strategy="level", level=1))),
        "bf16_xor_pack2": dict(raw=step_bf16.tobytes(), dtype="bfloat16", shape=[6000],
                               kw=dict(base_raw=big_bf16.tobytes(), base_hash="0" * 64, config=SegmentedConfig(delta="xor"))),
    }


def encode_case(case):
    kw = dict(case["kw"])
    kw.setdefault("codec", "segmented")
    return encode_tensor(case["raw"], case["dtype"], case["shape"], **kw)


def regenerate(every: bool) -> None:
    """Write the fixtures of new cases (of every case with ``every``: old fixtures keep the
    object names of the release that wrote them, which is part of what they test)."""
    GOLDEN.mkdir(parents=True, exist_ok=True)
    for name, case in cases().items():
        enc = encode_case(case)
        d = GOLDEN / name
        if d.exists() and not every:
            continue
        d.mkdir(exist_ok=True)
        for stale in d.glob("*.zst"):
            stale.unlink()
        (d / "raw.bin").write_bytes(case["raw"])
        base = case["kw"].get("base_raw")
        if base is not None:
            (d / "base.bin").write_bytes(base)
        (d / "manifest.json").write_text(json.dumps(enc.manifest, indent=1, sort_keys=True) + "\n")
        for blob in enc.blobs:
            (d / f"{content_hash(blob)}.zst").write_bytes(blob)


@pytest.mark.parametrize("name", sorted(cases()))
def test_checked_in_blobs_decode_bit_exactly(name):
    d = GOLDEN / name
    manifest = json.loads((d / "manifest.json").read_text())
    raw = (d / "raw.bin").read_bytes()
    base = (d / "base.bin").read_bytes() if (d / "base.bin").exists() else None

    def fetch(h):
        data = (d / f"{h}.zst").read_bytes()
        assert name_matches(h, data)   # written with BLAKE2b-256 names: still verified
        return data

    out = decode_tensor(manifest, fetch, len(raw), base=(lambda h: base) if base else None)
    assert np.array_equal(np.frombuffer(out, np.uint8), np.frombuffer(raw, np.uint8))


@pytest.mark.parametrize("name", sorted(cases()))
def test_encoding_today_matches_the_golden_format(name):
    d = GOLDEN / name
    golden = json.loads((d / "manifest.json").read_text())
    case = cases()[name]
    assert (d / "raw.bin").read_bytes() == case["raw"]
    enc = encode_case(case)
    skip = {"segments", "sizes"}
    # a case written before a better coding existed names what the encoder chooses today
    expected = dict(golden, **case.get("now", {}))
    assert {k: v for k, v in enc.manifest.items() if k not in skip} == {k: v for k, v in expected.items() if k not in skip}
    today = {content_hash(b): b for b in enc.blobs}
    lengths = segment_lengths(golden, len(case["raw"]), lambda h: (d / f"{h}.zst").read_bytes())

    pairs = zip(enc.manifest["segments"], segment_codings(enc.manifest), golden["segments"], segment_codings(golden), lengths)
    for new_h, new_c, old_h, old_c, length in pairs:
        old = (d / f"{old_h}.zst").read_bytes()
        assert decompress_segment(today[new_h], new_h, length, new_c) == decompress_segment(old, old_h, length, old_c)


if __name__ == "__main__" and "--regen" in sys.argv:
    regenerate(every="--all" in sys.argv)
