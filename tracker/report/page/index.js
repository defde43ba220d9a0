/* energy-tracker index: sort, filter, totals and side-by-side comparison, all in the page
   (no library, no request). Rows are server-drawn HTML; their numbers come from the JSON in
   #index-data. User strings are set with textContent, never parsed as markup. */
(function () {
"use strict";
/* common.js, inlined before this file */
var sv = etCommon.sv, el = etCommon.el, ticks = etCommon.ticks, fmt = etCommon.formatter(3, 8);
var DATA = JSON.parse(document.getElementById("index-data").textContent);
var ROWS = DATA.rows, table = document.getElementById("runs");
var tbody = table.tBodies[0], trs = Array.prototype.slice.call(tbody.rows);
var COLOURS = ["#4C78A8", "#F58518", "#E45756", "#72B7B2", "#54A24B", "#EECA3B", "#B279A2",
               "#FF9DA6", "#9D755D", "#BAB0AC"];
/* lower is better for every metric compared */
var METRICS = [["kwh", "facility energy", "kWh"], ["g", "emissions", "g CO2e"],
               ["j_per_step", "energy per step", "J/step"],
               ["j_per_sample", "energy per sample", "J/sample"],
               ["j_per_token", "energy per token", "J/token"],
               ["duration_s", "time", "s"], ["mean_w", "mean IT power", "W"]];

function num(v) { return typeof v === "number" && isFinite(v); }

/* -- sorting ------------------------------------------------------------------------------ */
var sortKey = null, sortDir = 1;
Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, col) {
  if (!th.dataset.key) return;
  th.addEventListener("click", function () {
    sortDir = sortKey === th.dataset.key ? -sortDir : 1;
    sortKey = th.dataset.key;
    Array.prototype.forEach.call(th.parentNode.cells, function (c) { c.classList.remove("asc", "desc"); });
    th.classList.add(sortDir > 0 ? "asc" : "desc");
    var numeric = th.dataset.type === "n";
    trs.sort(function (a, b) {
      var x = a.cells[col].dataset.v, y = b.cells[col].dataset.v;
      if (x === "" || y === "") return x === y ? 0 : x === "" ? 1 : -1;   /* n/a last */
      if (numeric) return (parseFloat(x) - parseFloat(y)) * sortDir;
      return x.localeCompare(y) * sortDir;
    });
    trs.forEach(function (tr) { tbody.appendChild(tr); });
  });
});

/* -- filtering and totals -------------------------------------------------------------------- */
var filter = document.getElementById("filter"), kind = document.getElementById("kind");
function shown() { return trs.filter(function (tr) { return !tr.hidden; }); }
function apply() {
  var words = filter.value.toLowerCase().split(/\s+/).filter(Boolean), k = kind.value;
  trs.forEach(function (tr) {
    var text = tr.textContent.toLowerCase();
    tr.hidden = (k && tr.dataset.kind !== k) ||
      !words.every(function (w) { return text.indexOf(w) >= 0; });
  });
  totals();
}
function totals() {
  var rows = shown(), kwh = 0, g = 0, dur = 0, nk = 0, ng = 0;
  rows.forEach(function (tr) {
    var r = ROWS[+tr.dataset.i];
    if (num(r.kwh)) { kwh += r.kwh; nk++; }
    if (num(r.g)) { g += r.g; ng++; }
    if (num(r.duration_s)) dur += r.duration_s;
  });
  document.getElementById("t-count").textContent = rows.length;
  document.getElementById("t-kwh").textContent = nk ? fmt(kwh, 6) : "n/a";
  document.getElementById("t-g").textContent = ng ? fmt(g, 4) : "n/a";
  document.getElementById("t-duration").textContent = fmt(dur, 5) + " s";
  table.etTotals = {rows: rows.length, kwh: kwh, g: g, duration_s: dur};
}
filter.addEventListener("input", apply);
kind.addEventListener("change", apply);

/* -- picking and comparing ------------------------------------------------------------------- */
var boxes = Array.prototype.slice.call(tbody.querySelectorAll("input.pick"));
function picked() {
  return boxes.filter(function (b) { return b.checked; }).map(function (b) { return +b.dataset.i; });
}
function count() {
  var n = picked().length;
  document.getElementById("picked").textContent = n ? n + " picked" : "";
}
boxes.forEach(function (b) { b.addEventListener("change", count); });
document.getElementById("pick-all").addEventListener("change", function (ev) {
  shown().forEach(function (tr) { tr.querySelector("input.pick").checked = ev.target.checked; });
  count();
});
document.getElementById("compare-btn").addEventListener("click", function () { compare(picked()); });

function best(runs, key) {
  var b = null;
  runs.forEach(function (r, i) { if (num(r[key]) && (b === null || r[key] < runs[b][key])) b = i; });
  return b;
}
function compare(idx) {
  var sec = document.getElementById("compare"), head = document.getElementById("compare-best");
  var box = document.getElementById("compare-table"), chart = document.getElementById("compare-chart");
  sec.hidden = false;
  box.textContent = ""; chart.textContent = ""; head.textContent = "";
  var runs = idx.map(function (i) { return ROWS[i]; });
  if (runs.length < 2) {
    head.textContent = "Pick at least two rows (the boxes on the left), then press compare.";
    sec.etInfo = {runs: runs.length};
    return;
  }
  var info = {runs: runs.length, best: {}};
  var t = el("table", null, box), hr = el("tr", null, el("thead", null, t));
  el("th", null, hr, "");
  runs.forEach(function (r, i) {
    var th = el("th", "n", hr);
    var sw = el("i", null, th); sw.style.cssText = "display:inline-block;width:10px;height:10px;margin-right:4px;background:" + COLOURS[i % COLOURS.length];
    el("span", null, th, r.name);
  });
  var tb = el("tbody", null, t);
  METRICS.forEach(function (m) {
    var b = best(runs, m[0]), tr = el("tr", null, tb);
    el("th", null, tr, m[1] + " (" + m[2] + ")");
    runs.forEach(function (r, i) {
      var v = r[m[0]], td = el("td", "n", tr);
      td.dataset.metric = m[0];
      if (!num(v)) { td.textContent = "n/a"; return; }
      var text = fmt(v, 5);
      if (b !== null && i !== b && runs[b][m[0]] > 0)
        text += " (+" + fmt((v - runs[b][m[0]]) / runs[b][m[0]] * 100, 3) + " %)";
      td.textContent = text;
      if (i === b) { td.classList.add("best"); td.title = "lowest " + m[1]; }
    });
    if (b !== null) info.best[m[0]] = runs[b].name;
  });
  var tr2 = el("tr", null, tb);
  el("th", null, tr2, "measured by / factor");
  runs.forEach(function (r) { el("td", "muted", tr2, (r.methods || "n/a") + "; " + (r.factor || "n/a")); });
  var lines = [];
  [["j_per_sample", "sample"], ["j_per_token", "token"]].forEach(function (k) {
    var b = best(runs, k[0]);
    if (b === null) return;
    var others = runs.filter(function (r, i) { return i !== b && num(r[k[0]]); });
    var next = others.length ? Math.min.apply(null, others.map(function (r) { return r[k[0]]; })) : null;
    lines.push("Most efficient per " + k[1] + ": " + runs[b].name + " (" + fmt(runs[b][k[0]], 4) +
               " J/" + k[1] + (next ? ", " + fmt((next - runs[b][k[0]]) / next * 100, 3) +
               " % below the next best" : "") + ")");
  });
  if (!lines.length) lines.push("No run counted samples or tokens (run.steps(..., samples=, tokens=)): " +
                                "compare them per step or in total.");
  head.textContent = lines.join(". ") + ".";
  info.headline = head.textContent;
  info.series = drawChart(chart, runs);
  sec.etInfo = info;
  sec.scrollIntoView();
}

/* -- the overlay chart ---------------------------------------------------------------------- */
function drawChart(root, runs) {
  var series = runs.map(function (r, i) {
    return {name: r.name, color: COLOURS[i % COLOURS.length], t: (r.power || {}).t || [], w: (r.power || {}).w || []};
  }).filter(function (s) { return s.t.length; });
  if (!series.length) { root.textContent = "no power timeline in these runs' logs"; return 0; }
  var tmax = 0, wmax = 0;
  series.forEach(function (s) {
    tmax = Math.max(tmax, s.t[s.t.length - 1]);
    s.w.forEach(function (w) { if (w > wmax) wmax = w; });
  });
  var hours = tmax > 7200, k = hours ? 1 / 3600 : 1, unit = hours ? "h" : "s";
  var W = Math.max(420, root.clientWidth || 900), H = 300, ML = 64, MR = 20, MT = 10, MB = 40;
  var pw = W - ML - MR, ph = H - MT - MB, x1 = tmax * k || 1, y1 = wmax * 1.08 || 1;
  var legend = el("div", "cmp-legend", root);
  series.forEach(function (s) { var i = el("i", null, legend); i.style.background = s.color; el("span", null, legend, s.name); });
  var svg = sv("svg", {width: W, height: H, "class": "main-svg"}, root);
  var g = sv("g", {"class": "et-grid"}, svg);
  function X(t) { return ML + t * k / x1 * pw; }
  function Y(w) { return MT + ph - w / y1 * ph; }
  ticks(0, x1, 8).forEach(function (v) {
    sv("line", {x1: ML + v / x1 * pw, x2: ML + v / x1 * pw, y1: MT, y2: MT + ph}, g);
    sv("text", {x: ML + v / x1 * pw, y: MT + ph + 14, "text-anchor": "middle"}, g).textContent = fmt(v);
  });
  ticks(0, y1, 5).forEach(function (v) {
    sv("line", {x1: ML, x2: ML + pw, y1: Y(v), y2: Y(v)}, g);
    sv("text", {x: ML - 6, y: Y(v) + 4, "text-anchor": "end"}, g).textContent = fmt(v);
  });
  sv("rect", {x: ML, y: MT, width: pw, height: ph, "class": "et-frame"}, svg);
  sv("text", {x: ML + pw / 2, y: H - 6, "text-anchor": "middle", "class": "et-axis"}, svg).textContent = "time since start (" + unit + ")";
  sv("text", {x: 14, y: MT + ph / 2, transform: "rotate(-90 14 " + (MT + ph / 2) + ")", "text-anchor": "middle", "class": "et-axis"}, svg).textContent = "W";
  series.forEach(function (s) {
    var d = s.t.map(function (t, i) { return (i ? "L" : "M") + X(t).toFixed(1) + " " + Y(s.w[i]).toFixed(1); }).join("");
    sv("path", {d: d, fill: "none", stroke: s.color, "stroke-width": 1.6, "class": "cmp-line"}, svg);
  });
  var cursor = sv("line", {y1: MT, y2: MT + ph, stroke: "#1d2733", "stroke-dasharray": "3 3", visibility: "hidden"}, svg);
  var tip = el("div", "et-tip", null); tip.style.display = "none";
  var wrap = el("div", "et-box", null); root.insertBefore(wrap, svg); wrap.appendChild(svg); wrap.appendChild(tip);
  var over = sv("rect", {x: ML, y: MT, width: pw, height: ph, fill: "transparent", "class": "et-over"}, svg);
  over.addEventListener("mousemove", function (ev) {
    var px = ev.clientX - svg.getBoundingClientRect().left, t = (px - ML) / pw * x1 / k;
    cursor.setAttribute("x1", px); cursor.setAttribute("x2", px); cursor.setAttribute("visibility", "visible");
    tip.textContent = "";
    el("b", null, tip, "time since start " + fmt(t * k) + " " + unit);
    series.forEach(function (s) {
      var j = 0, bd = Infinity;
      s.t.forEach(function (x, i) { if (Math.abs(x - t) < bd) { bd = Math.abs(x - t); j = i; } });
      el("div", null, tip, s.name + ": " + fmt(s.w[j]) + " W");
    });
    tip.style.display = "block";
    tip.style.left = Math.min(px + 14, W - 260) + "px"; tip.style.top = "20px";
  });
  over.addEventListener("mouseleave", function () { tip.style.display = "none"; cursor.setAttribute("visibility", "hidden"); });
  return series.length;
}

apply();
count();
if (DATA.compare_all) {
  boxes.forEach(function (b) { b.checked = true; });
  count();
  compare(picked());
}
})();
