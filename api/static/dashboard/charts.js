/* Hand-drawn SVG charts for the dashboard: no chart library needed for two small plots. */
"use strict";

const Charts = (() => {
  const NS = "http://www.w3.org/2000/svg";
  const W = 560, H = 180, PAD = { l: 34, r: 8, t: 18, b: 22 };

  function el(name, attrs, text) {
    const node = document.createElementNS(NS, name);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function frame(svg, maxY, labels, ySuffix) {
    svg.replaceChildren();
    const innerH = H - PAD.t - PAD.b;
    for (let i = 0; i <= 4; i++) {
      const y = PAD.t + innerH - (innerH * i) / 4;
      svg.appendChild(el("line", { x1: PAD.l, x2: W - PAD.r, y1: y, y2: y, class: "axis" }));
      svg.appendChild(el("text", { x: PAD.l - 4, y: y + 3, "text-anchor": "end" },
        `${Math.round((maxY * i) / 4)}${ySuffix}`));
    }
    const step = (W - PAD.l - PAD.r) / labels.length;
    labels.forEach((lab, i) => svg.appendChild(
      el("text", { x: PAD.l + step * (i + 0.5), y: H - 8, "text-anchor": "middle" }, lab)));
    return { innerH, step };
  }

  /** Grouped bars: series = [{values, color, name}], values may be null (no data). */
  function bars(svg, labels, series, maxY, ySuffix) {
    const { innerH, step } = frame(svg, maxY, labels, ySuffix || "");
    const groupW = step * 0.7, barW = groupW / series.length;
    series.forEach((s, si) => s.values.forEach((v, i) => {
      if (v === null || v === undefined) return;
      const h = (innerH * Math.min(v, maxY)) / maxY;
      const x = PAD.l + step * i + (step - groupW) / 2 + barW * si;
      const rect = el("rect", { x: x + 1, y: PAD.t + innerH - h, width: Math.max(barW - 2, 1),
        height: Math.max(h, 0.5), rx: 2, fill: s.color });
      rect.appendChild(el("title", {}, `${s.name} ${labels[i]}: ${v}${ySuffix || ""}`));
      svg.appendChild(rect);
    }));
    const legend = el("g", {});
    series.forEach((s, si) => {
      const x = W - PAD.r - 80 * (series.length - si);
      legend.appendChild(el("rect", { x, y: 2, width: 9, height: 9, rx: 2, fill: s.color }));
      legend.appendChild(el("text", { x: x + 13, y: 10 }, s.name));
    });
    svg.appendChild(legend);
  }

  return { bars };
})();
