// Minimal canvas plots for the owtrain dashboard, written for it so the page needs no CDN.
// linePlot draws one or more series of [x, y] points with axes, ticks and a legend;
// barPlot draws labelled bars. Each records how many points it drew in the canvas's
// data-points attribute, which the browser test reads to see the plots change.
"use strict";

const OwPlot = (() => {
  const COLORS = ["#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed", "#0891b2"];
  const PAD = { left: 52, right: 12, top: 10, bottom: 28 };

  // "Nice" tick values covering [lo, hi] (about five of them).
  function ticks(lo, hi) {
    if (!(hi > lo)) { hi = lo + 1; }
    const raw = (hi - lo) / 5;
    const mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw);
    const out = [];
    for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) { out.push(v); }
    return out;
  }

  function fmt(v) {
    const a = Math.abs(v);
    if (a === 0) { return "0"; }
    if (a >= 1000) { return v.toFixed(0); }
    if (a >= 10) { return v.toFixed(1).replace(/\.0$/, ""); }
    return v.toPrecision(3).replace(/\.?0+$/, "");
  }

  function setup(canvas) {
    const ctx = canvas.getContext("2d");
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    ctx.font = "11px system-ui, sans-serif";
    return ctx;
  }

  // Axes, grid and tick labels; xTicks=false leaves the x labels to the caller (bar labels).
  function frame(ctx, canvas, xr, yr, xTicks = true) {
    const w = canvas.width - PAD.left - PAD.right;
    const h = canvas.height - PAD.top - PAD.bottom;
    const sx = (x) => PAD.left + ((x - xr[0]) / (xr[1] - xr[0] || 1)) * w;
    const sy = (y) => PAD.top + h - ((y - yr[0]) / (yr[1] - yr[0] || 1)) * h;
    ctx.strokeStyle = "#e5e7eb";
    ctx.fillStyle = "#6b7280";
    ctx.lineWidth = 1;
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    for (const t of ticks(yr[0], yr[1])) {
      ctx.beginPath(); ctx.moveTo(PAD.left, sy(t)); ctx.lineTo(PAD.left + w, sy(t)); ctx.stroke();
      ctx.fillText(fmt(t), PAD.left - 4, sy(t));
    }
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    if (xTicks) { for (const t of ticks(xr[0], xr[1])) { ctx.fillText(fmt(t), sx(t), PAD.top + h + 6); } }
    ctx.strokeStyle = "#9ca3af";
    ctx.strokeRect(PAD.left, PAD.top, w, h);
    return { sx, sy };
  }

  function empty(ctx, canvas) {
    ctx.fillStyle = "#9ca3af";
    ctx.textAlign = "center";
    ctx.fillText("waiting for data…", canvas.width / 2, canvas.height / 2);
    canvas.dataset.points = "0";
  }

  // series: [{name, points: [[x, y], ...]}]; opts.yMin/yMax pin the y range (e.g. accuracy 0..1).
  function linePlot(canvas, series, opts = {}) {
    const ctx = setup(canvas);
    const all = series.flatMap((s) => s.points).filter((p) => Number.isFinite(p[0]) && Number.isFinite(p[1]));
    if (all.length === 0) { empty(ctx, canvas); return; }
    const xs = all.map((p) => p[0]);
    const ys = all.map((p) => p[1]);
    const xr = [Math.min(...xs), Math.max(...xs)];
    if (xr[0] === xr[1]) { xr[1] = xr[0] + 1; }
    const yr = [opts.yMin ?? Math.min(...ys), opts.yMax ?? Math.max(...ys)];
    if (yr[0] === yr[1]) { yr[0] -= 0.5; yr[1] += 0.5; }
    const { sx, sy } = frame(ctx, canvas, xr, yr);
    series.forEach((s, i) => {
      const pts = s.points.filter((p) => Number.isFinite(p[0]) && Number.isFinite(p[1]));
      ctx.strokeStyle = COLORS[i % COLORS.length];
      ctx.fillStyle = ctx.strokeStyle;
      ctx.lineWidth = 1.6;
      ctx.beginPath();
      pts.forEach((p, j) => (j ? ctx.lineTo(sx(p[0]), sy(p[1])) : ctx.moveTo(sx(p[0]), sy(p[1]))));
      ctx.stroke();
      if (pts.length < 60) { pts.forEach((p) => ctx.fillRect(sx(p[0]) - 1.5, sy(p[1]) - 1.5, 3, 3)); }
      ctx.textAlign = "right";
      ctx.textBaseline = "top";
      ctx.fillText(s.name, canvas.width - PAD.right - 4, PAD.top + 4 + 14 * i);
    });
    canvas.dataset.points = String(all.length);
  }

  // bars: [{label, value}]
  function barPlot(canvas, bars) {
    const ctx = setup(canvas);
    if (bars.length === 0) { empty(ctx, canvas); return; }
    const max = Math.max(1, ...bars.map((b) => b.value));
    const { sy } = frame(ctx, canvas, [0, bars.length], [0, max], false);
    const w = (canvas.width - PAD.left - PAD.right) / bars.length;
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    bars.forEach((b, i) => {
      const x = PAD.left + i * w;
      ctx.fillStyle = COLORS[0];
      ctx.fillRect(x + w * 0.15, sy(b.value), w * 0.7, sy(0) - sy(b.value));
      ctx.fillStyle = "#374151";
      ctx.fillText(b.label, x + w / 2, sy(0) + 6);
    });
    canvas.dataset.points = String(bars.length);
  }

  return { linePlot, barPlot };
})();
