"""How `dlv eval --progressive` over many versions shows its SelectionReport and its progress."""
from __future__ import annotations


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
    # "bounded from": a node when the tensors before it were already held whole (a sibling read them) and
    # were run exactly instead; "of stored" then counts the tensors after it only
    ui.table(["version", "records", "bounded from", "bytes read", "of stored", "decided exactly",
              "equal to full precision"],
             [[v.label, v.report.n_records, v.report.head_from or "inputs", v.report.bytes_read,
               v.report.bytes_total, v.report.exact_records,
               "-" if v.labels_equal is None else ("yes" if v.labels_equal else "NO")] for v in report.versions],
             align_right=(1, 3, 4, 5))
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
    pays = report.pays_below_mbps
    if pays is not None:
        ui.print()
        latency = f"{1000 * report.link.latency_s:g} ms per request"
        if pays == float("inf"):
            ui.print(f"progressive pays at any throughput ({latency}), by this run's measured seconds")
        elif pays == 0.0:
            ui.print("progressive cannot pay on a slower link here: it fetched no fewer bytes")
        else:
            ui.print(f"progressive pays below {pays:.3g} Mbit/s ({latency}), by this run's measured seconds")
    return 0 if report.labels_equal is not False else 1


def selection_progress(ui):
    """A progress callback drawing one line per finished version on the terminal (None elsewhere)."""
    if not getattr(ui, "interactive", False) or ui.json_mode:
        return None

    def draw(p) -> None:
        ui.warn(f"[{p.phase} {p.done}/{p.total}] {p.ref}: {p.bytes_fetched} bytes fetched so far")
    return draw
