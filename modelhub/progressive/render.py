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


def _cost_row(label: str, c) -> list:
    modelled = "-" if c.modelled_fetch_s is None else f"{c.modelled_fetch_s:.3f}"
    return [label, c.bytes_fetched, c.requests, f"{c.fetch_s:.3f}", modelled, f"{c.decode_s:.3f}",
            f"{c.compute_s:.3f}", f"{c.total_s:.3f}"]


def show_selection(report, ui) -> int:
    """A SelectionReport: per-version lines, then the union bytes and seconds against full precision."""
    if report.warning:
        ui.warn(f"warning: {report.warning}")
    if ui.json_mode:
        ui.json(report.to_dict())
        return 0 if report.labels_equal is not False else 1
    ui.table(["version", "records", "bytes read", "of stored", "decided exactly", "equal to full precision"],
             [[v.label, v.report.n_records, v.report.bytes_read, v.report.bytes_total, v.report.exact_records,
               "-" if v.labels_equal is None else ("yes" if v.labels_equal else "NO")] for v in report.versions],
             align_right=(1, 2, 3, 4))
    ui.print()
    pairs = [("versions", str(len(report.versions))), ("records", str(report.n_records)), ("top", str(report.top_k)),
             ("weights from", "a remote" if report.placement.remote else "the local archive"),
             ("bytes fetched (union)", f"{report.progressive.bytes_fetched} / {report.bytes_stored} stored "
                                       f"({100 * report.bytes_fraction:.1f}%)")]
    if report.labels_equal is not None:
        pairs.append(("labels equal to full precision", "yes, every version and record" if report.labels_equal
                      else "NO (a bug: please report it)"))
    ui.kv(pairs)
    rows = [_cost_row("progressive", report.progressive)]
    if report.full is not None:
        rows.append(_cost_row("full precision", report.full))
    ui.table(["run", "bytes", "requests", "fetch s", "link s", "decode s", "compute s", "total s"], rows,
             align_right=(1, 2, 3, 4, 5, 6, 7))
    return 0 if report.labels_equal is not False else 1


def terminal_progress(ui):
    """A progress callback drawing one line per finished version on the terminal (None elsewhere)."""
    if not getattr(ui, "interactive", False) or ui.json_mode:
        return None

    def draw(p) -> None:
        ui.warn(f"[{p.phase} {p.done}/{p.total}] {p.ref}: {p.bytes_fetched} bytes fetched so far")
    return draw
