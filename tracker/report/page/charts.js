/* energy-tracker report charts: SVG, no library, no network. Every user string is set with
   textContent or setAttribute, never parsed as markup. Power series arrive as min/max per
   fine bucket; on every zoom they are re-bucketed to about one bucket per pixel keeping each
   bucket's lowest and highest reading, so a one-sample peak is drawn at any zoom. */
(function () {
"use strict";
var ML = 70, MR = 24, GAP = 34;
/* common.js, inlined before this file */
var sv = etCommon.sv, hd = etCommon.el, ticks = etCommon.ticks, fmt = etCommon.formatter(2, 6);
/* fine buckets -> about n coarse buckets over [x0, x1]; a gap of more than `hold` fine
   buckets breaks the line (null). mm: points at the min and max, in time order; band: [x, lo, hi]. */
function rebucket(s, g, x0, x1, n) {
  var d = s.d, cw = (x1 - x0) / n, out = [], cur = null, prev = null, i;
  function flush() {
    if (!cur) return;
    if (s.kind === "band") out.push([cur.x / cur.c, cur.lo, cur.hi]);
    else if (cur.tl === cur.th) out.push([cur.tl, cur.lo]);
    else if (cur.tl < cur.th) { out.push([cur.tl, cur.lo]); out.push([cur.th, cur.hi]); }
    else { out.push([cur.th, cur.hi]); out.push([cur.tl, cur.lo]); }
    cur = null;
  }
  for (i = 0; i < d.b.length; i++) {
    var b = d.b[i], mid = (g[0] + (b + 0.5) * g[1]) * g[3];
    if (mid < x0 - 2 * cw || mid > x1 + 2 * cw) { continue; }
    if (prev !== null && b - prev > g[2]) { flush(); out.push(null); }
    prev = b;
    var c = Math.floor((mid - x0) / cw);
    if (cur && cur.k !== c) flush();
    var tl = s.kind === "band" ? mid : d.tl[i], th = s.kind === "band" ? mid : d.th[i];
    if (!cur) cur = {k: c, tl: tl, lo: d.lo[i], th: th, hi: d.hi[i], x: 0, c: 0};
    if (d.lo[i] < cur.lo) { cur.lo = d.lo[i]; cur.tl = tl; }
    if (d.hi[i] > cur.hi) { cur.hi = d.hi[i]; cur.th = th; }
    cur.x += mid; cur.c += 1;
  }
  flush();
  return out;
}
function points(s, g, x0, x1, n) {
  if (s.kind === "mm" || s.kind === "band") return rebucket(s, g, x0, x1, n);
  var out = [], x = s.d.x, y = s.d.y;
  for (var i = 0; i < x.length; i++) out.push(x[i] == null ? null : [x[i], y[i], s.d.text ? s.d.text[i] : null]);
  return out;
}
function nearest(pts, x) {
  var best = null, bd = Infinity;
  for (var i = 0; i < pts.length; i++) {
    var p = pts[i];
    if (p && Math.abs(p[0] - x) < bd) { bd = Math.abs(p[0] - x); best = p; }
  }
  return best;
}

function TimeChart(root, spec) {
  this.root = root; this.spec = spec; this.full = spec.x_range.slice(); this.range = spec.x_range.slice();
  this.hidden = {};
  root.classList.add("et-chart");
  this.legend = hd("div", "et-legend", root);
  this.box = hd("div", "et-box", root);
  this.tip = hd("div", "et-tip", this.box);
  this.tip.style.display = "none";
  var self = this, seen = {};
  spec.panels.forEach(function (p) {
    p.series.forEach(function (s) {
      if (s.legend === false || seen[s.group || s.name]) return;
      seen[s.group || s.name] = true;
      var item = hd("span", "et-item", self.legend), sw = hd("i", null, item);
      sw.style.background = s.color;
      hd("span", null, item, s.name);
      item.addEventListener("click", function () {
        var key = s.group || s.name;
        self.hidden[key] = !self.hidden[key];
        item.classList.toggle("off", !!self.hidden[key]);
        self.draw();
      });
    });
    (p.shades || []).forEach(function (sh) {
      if (seen["w:" + sh[4]]) return;
      seen["w:" + sh[4]] = true;
      var item = hd("span", "et-item", self.legend), sw = hd("i", null, item);
      sw.style.background = sh[2]; sw.style.opacity = 0.5;
      hd("span", null, item, sh[4]);
    });
  });
  this.draw();
  window.addEventListener("resize", function () { self.draw(); });
  window.addEventListener("mouseup", function (ev) { self.up(ev); });
}
TimeChart.prototype.draw = function () {
  var self = this, spec = this.spec, W = Math.max(320, this.box.clientWidth || 900);
  var pw = W - ML - MR, x0 = this.range[0], x1 = this.range[1], total = 0;
  spec.panels.forEach(function (p) { total += p.height + GAP; });
  if (this.svg) this.box.removeChild(this.svg);
  var svg = this.svg = sv("svg", {width: W, height: total + 30, "class": "main-svg"});
  this.box.insertBefore(svg, this.tip);
  function X(x) { return ML + (x - x0) / (x1 - x0 || 1) * pw; }
  var top = 0;
  this.drawn = [];
  spec.panels.forEach(function (p) {
    var y0 = top + 22, ph = p.height, cache = [];
    sv("text", {x: ML, y: y0 - 8, "class": "et-title"}, svg).textContent = p.title;
    var clipId = "c" + Math.random().toString(36).slice(2);
    sv("rect", {x: ML, y: y0, width: pw, height: ph}, sv("clipPath", {id: clipId}, svg));
    var lo = Infinity, hi = -Infinity;
    p.series.forEach(function (s) {
      var pts = self.hidden[s.group || s.name] ? [] : points(s, spec.grid, x0, x1, Math.max(50, pw));
      cache.push(pts);
      pts.forEach(function (q) {
        if (!q || q[0] < x0 || q[0] > x1) return;
        for (var j = 1; j < (s.kind === "band" ? 3 : 2); j++) {
          if (q[j] != null) { lo = Math.min(lo, q[j]); hi = Math.max(hi, q[j]); }
        }
      });
    });
    if (!isFinite(lo)) { lo = 0; hi = 1; }
    if (p.zero) lo = Math.min(0, lo);
    if (hi === lo) hi = lo + 1;
    hi += (hi - lo) * 0.06;
    function Y(v) { return y0 + ph - (v - lo) / (hi - lo) * ph; }
    var g = sv("g", {"class": "et-grid"}, svg);
    ticks(lo, hi, 4).forEach(function (v) {
      sv("line", {x1: ML, x2: ML + pw, y1: Y(v), y2: Y(v)}, g);
      sv("text", {x: ML - 6, y: Y(v) + 4, "text-anchor": "end"}, g).textContent = fmt(v, 4);
    });
    ticks(x0, x1, Math.max(2, Math.round(pw / 110))).forEach(function (v) {
      sv("line", {x1: X(v), x2: X(v), y1: y0, y2: y0 + ph}, g);
      sv("text", {x: X(v), y: y0 + ph + 14, "text-anchor": "middle"}, g).textContent = fmt(v, 6);
    });
    if (p.y_label) {
      sv("text", {x: 14, y: y0 + ph / 2, transform: "rotate(-90 14 " + (y0 + ph / 2) + ")",
        "text-anchor": "middle", "class": "et-axis"}, svg).textContent = p.y_label;
    }
    var plot = sv("g", {"clip-path": "url(#" + clipId + ")"}, svg);
    (p.shades || []).forEach(function (sh) {
      if (sh[1] < x0 || sh[0] > x1) return;
      var a = X(Math.max(sh[0], x0)), b = X(Math.min(sh[1], x1));
      sv("rect", {x: a, y: y0, width: Math.max(b - a, 1), height: ph, fill: sh[2],
        "fill-opacity": sh[3], "class": "et-shade"}, plot);
    });
    p.series.forEach(function (s, si) {
      var pts = cache[si];
      if (!pts.length) return;
      if (s.kind === "markers") {
        pts.forEach(function (q) {
          if (!q) return;
          var x = X(q[0]), y = Y(q[1]);
          sv("path", {d: "M" + (x - 4) + " " + (y - 5) + "h8l-4 7z", fill: s.color}, plot);
        });
        return;
      }
      var d = "", dl = "", seg = [];
      function band() {
        if (seg.length) {
          var up = seg.map(function (q) { return X(q[0]) + " " + Y(q[2]); });
          var dn = seg.slice().reverse().map(function (q) { return X(q[0]) + " " + Y(q[1]); });
          sv("path", {d: "M" + up.join("L") + "L" + dn.join("L") + "Z", fill: s.color,
            "fill-opacity": 0.25, stroke: "none"}, plot);
          dl += "M" + dn.reverse().join("L");
          d += "M" + up.join("L");
        }
        seg = [];
      }
      var pen = false;
      pts.forEach(function (q) {
        if (s.kind === "band") { if (q) seg.push(q); else band(); return; }
        if (!q || q[1] == null) { pen = false; return; }
        d += (pen ? "L" : "M") + X(q[0]).toFixed(1) + " " + Y(q[1]).toFixed(1);
        pen = true;
      });
      band();
      var at = {d: d + dl, fill: "none", stroke: s.color, "stroke-width": s.width || 1.2};
      if (s.dash) at["stroke-dasharray"] = "4 3";
      sv("path", at, plot);
    });
    sv("rect", {x: ML, y: y0, width: pw, height: ph, "class": "et-frame"}, svg);
    self.drawn.push({p: p, y0: y0, ph: ph, cache: cache});
    top = y0 + ph + GAP - 22 + 8;
  });
  sv("text", {x: ML + pw / 2, y: top + 14, "text-anchor": "middle", "class": "et-axis"}, svg)
    .textContent = spec.x_label;
  var over = sv("rect", {x: ML, y: 0, width: pw, height: top, fill: "transparent", "class": "et-over"}, svg);
  this.sel = sv("rect", {y: 0, height: top, width: 0, "class": "et-sel"}, svg);
  this.toX = function (px) { return x0 + (px - ML) / pw * (x1 - x0); };
  this.minSpan = (x1 - x0) / pw * 4;
  over.addEventListener("mousedown", function (ev) { self.start = self.px(ev); ev.preventDefault(); });
  over.addEventListener("mousemove", function (ev) {
    var px = self.px(ev);
    if (self.start != null) {
      self.sel.setAttribute("x", Math.min(px, self.start)); self.sel.setAttribute("width", Math.abs(px - self.start));
    }
    self.hover(self.toX(px), px, ev);
  });
  over.addEventListener("mouseleave", function () { self.tip.style.display = "none"; });
  over.addEventListener("dblclick", function () { self.zoom(self.full.slice()); });
  this.info();
};
TimeChart.prototype.px = function (ev) { return ev.clientX - this.svg.getBoundingClientRect().left; };
/* one listener per chart (not per drawing): a drag may end outside the chart */
TimeChart.prototype.up = function (ev) {
  if (this.start == null) return;
  var a = this.toX(Math.min(this.start, this.px(ev))), b = this.toX(Math.max(this.start, this.px(ev)));
  this.start = null;
  this.sel.setAttribute("width", 0);
  if (b - a > this.minSpan) this.zoom([a, b]);
};
TimeChart.prototype.zoom = function (range) { this.range = range; this.draw(); };
/* what is drawn, for tests and the curious: document.getElementById("fig-timeline").etInfo */
TimeChart.prototype.info = function () {
  var n = 0, pts = 0, shades = 0;
  this.drawn.forEach(function (dp) {
    shades += (dp.p.shades || []).length;
    dp.cache.forEach(function (c) { n += 1; pts += c.filter(Boolean).length; });
  });
  this.root.etInfo = {series: n, points: pts, shades: shades, range: this.range.slice(),
    peak: this.peak()};
};
TimeChart.prototype.peak = function () {
  var hi = -Infinity, r = this.range;
  this.drawn[0].cache.forEach(function (c, si) {
    if (this.drawn[0].p.series[si].kind === "markers") return;
    c.forEach(function (q) { if (q && q[0] >= r[0] && q[0] <= r[1]) hi = Math.max(hi, q[q.length === 3 && typeof q[2] === "number" ? 2 : 1]); });
  }, this);
  return hi;
};
TimeChart.prototype.hover = function (x, px, ev) {
  var tip = this.tip, w = this.svg.width.baseVal.value - ML - MR;
  var xpx = (this.range[1] - this.range[0]) / w, g = this.spec.grid, near = g[1] * g[3] * (g[2] + 1);
  while (tip.firstChild) tip.removeChild(tip.firstChild);
  hd("b", null, tip, this.spec.x_label + ": " + fmt(x, 6));
  this.drawn.forEach(function (dp) {
    dp.p.series.forEach(function (s, si) {
      var pts = dp.cache[si], q = null, line;
      if (s.d.text && s.kind !== "markers") {   /* spans: the one x lies in */
        for (var i = 0; i + 1 < pts.length; i++) {
          if (pts[i] && pts[i + 1] && pts[i][0] <= x && x <= pts[i + 1][0]) { q = pts[i]; break; }
        }
        if (!q) return;
        line = q[2];
      } else {
        q = nearest(pts, x);
        if (!q) return;
        var d = Math.abs(q[0] - x);
        if (s.kind === "markers" ? d > xpx * 8 : (s.kind !== "line" && d > Math.max(xpx * 12, near))) return;
        line = s.kind === "markers" ? q[2]
          : s.kind === "band" ? s.name + ": " + fmt(q[1]) + " to " + fmt(q[2]) + " " + (s.unit || "")
          : s.name + ": " + fmt(q[1]) + " " + (s.unit || "");
      }
      var row = hd("div", null, tip), sw = hd("i", null, row);
      sw.style.background = s.color;
      hd("span", null, row, line);
    });
  });
  var r = this.box.getBoundingClientRect();
  tip.style.display = "block";
  tip.style.left = Math.max(0, Math.min(px + 14, r.width - 300)) + "px";
  tip.style.top = (ev.clientY - r.top + 10) + "px";
};

function BarChart(root, spec) {
  root.classList.add("et-chart");
  var n = spec.labels.length, W = Math.max(320, root.clientWidth || 900), horiz = spec.orient === "h";
  var ML2 = horiz ? Math.min(260, 30 + 7 * Math.max.apply(null, spec.labels.map(function (l) { return l.length; }).concat([4]))) : ML;
  var H = horiz ? 40 + 26 * n : 300, pw = W - ML2 - MR, ph = H - 40 - (horiz ? 0 : 40);
  var svg = sv("svg", {width: W, height: H + 10, "class": "main-svg"}, root);
  var hi = Math.max.apply(null, spec.values.concat(spec.hline != null ? [spec.hline] : [], [0])) * 1.08 || 1;
  var g = sv("g", {"class": "et-grid"}, svg);
  ticks(0, hi, 5).forEach(function (v) {
    if (horiz) {
      var x = ML2 + v / hi * pw;
      sv("line", {x1: x, x2: x, y1: 10, y2: 10 + ph}, g);
      sv("text", {x: x, y: 24 + ph, "text-anchor": "middle"}, g).textContent = fmt(v);
    } else {
      var y = 10 + ph - v / hi * ph;
      sv("line", {x1: ML2, x2: ML2 + pw, y1: y, y2: y}, g);
      sv("text", {x: ML2 - 6, y: y + 4, "text-anchor": "end"}, g).textContent = fmt(v);
    }
  });
  var slot = (horiz ? ph : pw) / Math.max(n, 1);
  spec.labels.forEach(function (label, i) {
    var v = spec.values[i] || 0, len = v / hi * (horiz ? pw : ph), r;
    var colour = (spec.colors && spec.colors[i]) || "#4C78A8";
    if (horiz) {
      r = sv("rect", {x: ML2, y: 10 + i * slot + slot * 0.15, width: Math.max(len, 0), height: slot * 0.7, fill: colour}, svg);
      sv("text", {x: ML2 - 6, y: 10 + i * slot + slot / 2 + 4, "text-anchor": "end"}, svg).textContent = label;
      if (spec.text) sv("text", {x: ML2 + len + 4, y: 10 + i * slot + slot / 2 + 4, "class": "et-val"}, svg).textContent = spec.text[i];
    } else {
      r = sv("rect", {x: ML2 + i * slot + slot * 0.15, y: 10 + ph - len, width: slot * 0.7, height: Math.max(len, 0), fill: colour}, svg);
      sv("text", {x: ML2 + i * slot + slot / 2, y: 24 + ph, "text-anchor": "middle"}, svg).textContent = label;
    }
    sv("title", {}, r).textContent = spec.hover ? spec.hover[i] : label + ": " + fmt(v);
  });
  if (spec.hline != null) {
    var yh = 10 + ph - spec.hline / hi * ph;
    sv("line", {x1: ML2, x2: ML2 + pw, y1: yh, y2: yh, stroke: "#1d2733", "stroke-dasharray": "3 3"}, svg);
    sv("text", {x: ML2 + pw - 4, y: yh - 4, "text-anchor": "end"}, svg).textContent = spec.hline_label || "";
  }
  if (spec.x_label) sv("text", {x: ML2 + pw / 2, y: H + 6, "text-anchor": "middle", "class": "et-axis"}, svg).textContent = spec.x_label;
  if (spec.y_label) sv("text", {x: 14, y: 10 + ph / 2, transform: "rotate(-90 14 " + (10 + ph / 2) + ")", "text-anchor": "middle", "class": "et-axis"}, svg).textContent = spec.y_label;
}

/* copy buttons (the publish section): the clipboard API, else the text is selected so that
   Ctrl+C copies it (a browser that refuses the clipboard to a file:// page). */
function selectText(el) {
  var r = document.createRange(), sel = window.getSelection();
  r.selectNodeContents(el);
  sel.removeAllRanges();
  sel.addRange(r);
}
function copyButton(btn) {
  btn.addEventListener("click", function () {
    var el = document.getElementById(btn.getAttribute("data-copy")), note = btn.nextElementSibling;
    if (!el) return;
    function say(t) { if (note) note.textContent = t; }
    function fallback() {
      selectText(el);
      var ok = false;
      try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
      say(ok ? "copied" : "selected: press Ctrl+C to copy");
    }
    if (navigator.clipboard && navigator.clipboard.writeText) {
      navigator.clipboard.writeText(el.textContent).then(function () { say("copied"); }, fallback);
    } else fallback();
  });
}
var buttons = document.querySelectorAll("button.et-copy[data-copy]");
for (var b = 0; b < buttons.length; b++) copyButton(buttons[b]);

var nodes = document.querySelectorAll("script[type='application/json'][data-chart]");
for (var i = 0; i < nodes.length; i++) {
  var spec = JSON.parse(nodes[i].textContent), root = document.getElementById(nodes[i].getAttribute("data-chart"));
  if (!root) continue;
  try { (spec.type === "bar" ? BarChart : TimeChart).call(spec.type === "bar" ? null : Object.create(TimeChart.prototype), root, spec); }
  catch (e) { root.textContent = "chart failed: " + e; }
}
})();
