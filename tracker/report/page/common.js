/* energy-tracker page helpers shared by charts.js (report.html) and index.js (index.html,
   compare.html): inlined ahead of them in the page's one script, no library, no request.
   Strings are set with textContent or setAttribute, never parsed as markup. */
var etCommon = (function () {
"use strict";
var NS = "http://www.w3.org/2000/svg";
/* an SVG element with attributes `at`, appended to parent if given */
function sv(tag, at, parent) {
  var e = document.createElementNS(NS, tag);
  for (var k in at) e.setAttribute(k, at[k]);
  if (parent) parent.appendChild(e);
  return e;
}
/* an HTML element with class cls and text, appended to parent if given */
function el(tag, cls, parent, text) {
  var e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text != null) e.textContent = text;
  if (parent) parent.appendChild(e);
  return e;
}
/* a number formatter: d significant digits (4 by default), exponential with `exp` digits
   for very large or small values, at most `frac` fraction digits; "n/a" for none */
function formatter(exp, frac) {
  return function (v, d) {
    if (v == null || !isFinite(v)) return "n/a";
    var a = Math.abs(v);
    if (a !== 0 && (a >= 1e7 || a < 1e-3)) return v.toExponential(exp);
    return (+v.toPrecision(d || 4)).toLocaleString("en", {maximumFractionDigits: frac});
  };
}
/* about n round axis ticks over [lo, hi] (steps of 1, 2 or 5 times a power of ten) */
function ticks(lo, hi, n) {
  var span = hi - lo || 1, step = Math.pow(10, Math.floor(Math.log10(span / n))), r = span / n / step;
  step *= r > 5 ? 10 : r > 2 ? 5 : r > 1 ? 2 : 1;
  var out = [];
  for (var v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(+v.toPrecision(12));
  return out;
}
return {NS: NS, sv: sv, el: el, formatter: formatter, ticks: ticks};
})();
