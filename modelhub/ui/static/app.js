// dlv ui: sortable tables, version selection and metric plots (uPlot, shipped alongside).
"use strict";

(function () {
  // -- sortable tables: click a header; numbers sort as numbers, empty cells last -----------
  function cellValue(row, index) {
    const cell = row.children[index];
    if (!cell) return "";
    return cell.dataset.value !== undefined ? cell.dataset.value : cell.textContent.trim();
  }
  const empty = (v) => v === "" || v === undefined;
  function compare(a, b) {
    const x = Number(a), y = Number(b);
    if (!Number.isNaN(x) && !Number.isNaN(y)) return x - y;
    return String(a).localeCompare(String(b));
  }
  document.querySelectorAll("table.sortable").forEach((table) => {
    table.querySelectorAll("thead th").forEach((th, index) => {
      if (th.classList.contains("nosort")) return;
      th.classList.add("sorter");
      th.addEventListener("click", () => {
        const body = table.tBodies[0];
        const descending = th.dataset.dir === "asc";   // first click ascending, the next descending
        table.querySelectorAll("thead th").forEach((h) => { delete h.dataset.dir; });
        th.dataset.dir = descending ? "desc" : "asc";
        const rows = Array.from(body.rows);
        rows.sort((r1, r2) => {
          const a = cellValue(r1, index), b = cellValue(r2, index);
          if (empty(a) || empty(b)) return empty(a) - empty(b);   // empty cells last either way
          const c = compare(a, b);
          return descending ? -c : c;
        });
        rows.forEach((r) => body.appendChild(r));
      });
    });
  });

  // -- versions table: tick versions, then plot or diff them ---------------------------------
  const picks = () => Array.from(document.querySelectorAll("input.pick:checked")).map((c) => c.value);
  const compareButton = document.getElementById("compare");
  const diffButton = document.getElementById("diff");
  function refresh() {
    const n = picks().length;
    if (compareButton) compareButton.disabled = n === 0;
    if (diffButton) diffButton.disabled = n !== 2;
  }
  document.querySelectorAll("input.pick").forEach((c) => c.addEventListener("change", refresh));
  if (compareButton) compareButton.addEventListener("click", () => {
    const query = new URLSearchParams();
    picks().forEach((ref) => query.append("v", ref));
    window.location.href = "/compare?" + query.toString();
  });
  if (diffButton) diffButton.addEventListener("click", () => {
    const [a, b] = picks();
    window.location.href = "/diff?" + new URLSearchParams({ a: a, b: b }).toString();
  });
  refresh();

  // -- plots: one chart per metric, one line per version; steps on x ------------------------
  const palette = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"];
  let rendered = 0;
  document.querySelectorAll("figure.chart").forEach((figure) => {
    const series = JSON.parse(figure.querySelector("script.series").textContent);
    const steps = Array.from(new Set(series.flatMap((s) => s.points.map((p) => p[0])))).sort((a, b) => a - b);
    const data = [steps].concat(series.map((s) => {
      const byStep = new Map(s.points.map((p) => [p[0], p[1]]));
      return steps.map((x) => (byStep.has(x) ? byStep.get(x) : null));
    }));
    const target = figure.querySelector(".plot");
    const width = Math.max(320, Math.min(720, target.clientWidth || 640));
    const opts = {
      width: width, height: 260,
      scales: { x: { time: false } },
      axes: [{ label: "step" }, { label: figure.dataset.metric }],
      series: [{ label: "step" }].concat(series.map((s, i) => ({
        label: s.label, stroke: palette[i % palette.length], width: 2, spanGaps: true,
        points: { show: steps.length <= 60 },
      }))),
    };
    new uPlot(opts, data, target);
    rendered += 1;
  });
  document.body.dataset.plots = String(rendered);
})();
