"""The archive's encoders keep their sizes under one ``storage.tensors.ENCODER_REVISION``.

`dlv archive` keeps the sizes it measured in the catalog under ``encoder_id()`` (the revision
and the zstd library) and plans later archives with them. A change to what
:func:`archive_config` or :func:`encode_delta_best` make that leaves the revision alone would
plan every repository with stale sizes. tests/golden/encoder_sizes.json holds the sizes of
fixed encodings for the current revision; where they change, bump the revision and run
``python tests/test_encoder_revision.py --regen``.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import zstandard

from modelhub.storage.tensors import ENCODER_REVISION, archive_config, encode_delta_best, encode_tensor

GOLDEN = Path(__file__).parent / "golden" / "encoder_sizes.json"
ZSTD = ".".join(map(str, zstandard.ZSTD_VERSION))


def _bf16(a: np.ndarray) -> np.ndarray:
    return (a.astype("<f4").view("<u4") >> np.uint32(16)).astype("<u2")


def _cases() -> dict[str, tuple]:
    """name -> (raw, dtype, shape, base raw or None): wholes and deltas of every float width."""
    rng = np.random.default_rng(20261201)
    w = (rng.standard_normal((128, 160)) * 0.03).astype("<f4")
    step = (w + rng.standard_normal(w.shape).astype("<f4") * 3e-4).astype("<f4")
    rows = w.copy()
    rows[:8] += 0.01   # a few rows changed: zero runs elsewhere
    other = (rng.standard_normal((128, 160)) * 0.03).astype("<f4")   # unrelated: stored whole
    bias = (rng.standard_normal(64) * 0.1).astype("<f4")
    ints = rng.integers(-1000, 1000, 4096).astype("<i8")
    shape = list(w.shape)
    return {
        "f32_whole": (w.tobytes(), "float32", shape, None),
        "bf16_whole": (_bf16(w).tobytes(), "bfloat16", shape, None),
        "f16_whole": (w.astype("<f2").tobytes(), "float16", shape, None),
        "f32_small_vector": (bias.tobytes(), "float32", [64], None),
        "i64_whole": (ints.tobytes(), "int64", [4096], None),
        "f32_step": (step.tobytes(), "float32", shape, w.tobytes()),
        "bf16_step": (_bf16(step).tobytes(), "bfloat16", shape, _bf16(w).tobytes()),
        "f16_step": (step.astype("<f2").tobytes(), "float16", shape, w.astype("<f2").tobytes()),
        "f32_rows": (rows.tobytes(), "float32", shape, w.tobytes()),
        "f32_unrelated": (other.tobytes(), "float32", shape, w.tobytes()),
    }


def measured_sizes() -> dict[str, int]:
    out = {}
    for name, (raw, dtype, shape, base) in _cases().items():
        if base is None:
            enc = encode_tensor(raw, dtype, shape, config=archive_config(len(raw), len(shape)))
        else:
            enc = encode_delta_best(raw, dtype, shape, base_raw=base, base_hash="0" * 80)
        out[name] = sum(len(b) for b in enc.blobs)
    return out


def test_the_encoders_sizes_change_only_with_the_encoder_revision() -> None:
    golden = json.loads(GOLDEN.read_text())
    if golden["zstd"] != ZSTD:
        pytest.skip(f"sizes recorded with zstd {golden['zstd']}, this is {ZSTD}: frames may differ")
    assert golden["revision"] == ENCODER_REVISION, (
        f"ENCODER_REVISION is {ENCODER_REVISION} but {GOLDEN.name} is for {golden['revision']}; "
        "run python tests/test_encoder_revision.py --regen")
    now = measured_sizes()
    changed = {k: (golden["sizes"].get(k), v) for k, v in now.items() if golden["sizes"].get(k) != v}
    assert not changed, (
        f"the archive's encodings changed size under ENCODER_REVISION {ENCODER_REVISION} (golden, now): {changed}; "
        "bump storage.tensors.ENCODER_REVISION so that repositories measure again, then run "
        "python tests/test_encoder_revision.py --regen")


def test_the_cases_reach_the_context_coder_and_the_segmented_codec() -> None:
    """The golden sizes guard both delta codecs only if the cases reach both."""
    codecs = set()
    for name, (raw, dtype, shape, base) in _cases().items():
        if base is not None:
            enc = encode_delta_best(raw, dtype, shape, base_raw=base, base_hash="0" * 80)
            codecs.add(enc.manifest["codec"])
    assert len(codecs) == 2, codecs


if __name__ == "__main__" and "--regen" in sys.argv:
    GOLDEN.write_text(json.dumps({"revision": ENCODER_REVISION, "zstd": ZSTD, "sizes": measured_sizes()},
                                 indent=1, sort_keys=True) + "\n")
    print(f"wrote {GOLDEN}")
