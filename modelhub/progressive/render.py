"""Human and JSON output of a progressive query (used by `dlv eval --progressive`)."""
from __future__ import annotations

from .report import ProgressiveReport


def show_report(report: ProgressiveReport, ui) -> int:
    if ui.json_mode:
        ui.json(report.to_dict())
        return 0
    pairs = [("version", report.version), ("records", str(report.n_records)), ("top", str(report.top_k)),
             ("bytes read", f"{report.bytes_read} / {report.bytes_total} ({100 * report.bytes_fraction:.1f}%)"),
             ("bytes per record", f"{100 * report.record_bytes_fraction:.1f}% on average"),
             ("decided exactly", f"{report.exact_records} records (full precision)"),
             ("time", f"{report.time_s:.3f}s"),
             ("start", f"node {report.head_from} (exact features)" if report.head_from else "raw inputs")]
    if report.stored_features:
        pairs.append(("features from the store", f"yes ({report.stored_features_note}; "
                                                 f"{report.feature_bytes_read} bytes of features read)"))
    elif report.stored_features_note is not None:
        pairs.append(("features from the store", f"no ({report.stored_features_note})"))
    if report.full_time_s is not None:
        pairs.append(("full precision", f"{report.full_time_s:.3f}s, agreement {100 * (report.agreement or 0):.1f}%"))
    if report.fallback:
        pairs.append(("fallback", report.fallback))
    if report.exact_only:
        pairs.append(("read whole", ", ".join(report.exact_only)))
    ui.kv(pairs)
    ui.table(["step", "segments", "bytes %", "undecided", "certified", "cumulative %"],
             [[s.step, f"{s.mean_segments:.2f}", f"{100 * s.bytes_fraction:.1f}", s.records, s.certified,
               f"{100 * s.certified_fraction:.1f}"] for s in report.levels], align_right=(0, 1, 2, 3, 4, 5))
    return 0
