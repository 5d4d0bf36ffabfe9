"use strict";
// The customer tracking page: status, ETA, timeline and — while the delivery is next —
// a live map of the vehicle and its way to this address. The map is SVG drawn here in
// Web Mercator; tiles come only from ROUTEWATCH_TRACK_TILE_URL when one is configured.

const STEPS = [["scheduled", "Scheduled"], ["out_for_delivery", "Out for delivery"],
               ["arriving", "Arriving soon"], ["delivered", "Delivered"]];
const LABEL = Object.fromEntries(STEPS.concat([["failed", "Delivery attempt failed"],
                                               ["cancelled", "Cancelled"]]));
const EN_ROUTE = ["out_for_delivery", "arriving"];
const OPEN = ["scheduled"].concat(EN_ROUTE);
// Polling stays far inside the lookup rate limit (ROUTEWATCH_TRACK_RATE_PER_S, 1/s).
const REFRESH_MAP_MS = 5000, REFRESH_OPEN_MS = 15000, REFRESH_IDLE_MS = 60000;
const STALE_S = 120;  // an older fix is shown grey, "last seen"
const out = document.getElementById("out");
const input = document.getElementById("number");

function time(iso) {
  return iso ? new Date(iso).toLocaleTimeString([], {hour: "2-digit", minute: "2-digit"}) : "–";
}
function day(iso) {
  return iso ? new Date(iso).toLocaleString([], {dateStyle: "medium", timeStyle: "short"}) : "–";
}
function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;  // never innerHTML: nothing is interpreted
  return e;
}
function distance(m) {
  if (m < 950) return `${Math.max(10, Math.round(m / 10) * 10)} m`;
  return `${(m / 1000).toFixed(m < 9500 ? 1 : 0)} km`;
}
function ago(s) {
  if (s < 60) return `${Math.max(0, Math.round(s))} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  return `${Math.round(s / 3600)} h ago`;
}

// --- the map ----------------------------------------------------------------------------
const SVGNS = "http://www.w3.org/2000/svg";
const EARTH_M = 40075016.686;  // equator length: metres per world width at latitude 0
const MIN_SPAN_M = 300;        // never zoom in closer than this across the smaller side
function svg(tag, attrs) {
  const e = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  return e;
}
/** [lon, lat] -> Web Mercator, the world 1 unit wide (x east, y south). */
function merc(lon, lat) {
  const phi = Math.max(-85, Math.min(85, lat)) * Math.PI / 180;
  return [(lon + 180) / 360, (1 - Math.log(Math.tan(phi) + 1 / Math.cos(phi)) / Math.PI) / 2];
}
function niceMetres(max) {
  const k = Math.pow(10, Math.floor(Math.log10(max)));
  return [5, 2, 1].map(f => f * k).find(v => v <= max) || k;
}
function ease(t) { return t < .5 ? 2 * t * t : 1 - Math.pow(-2 * t + 2, 2) / 2; }

class LiveMap {
  constructor(config) {
    this.config = config || {};
    this.card = el("section", "card map-card");
    this.card.id = "map";
    this.box = el("div", "map");
    this.svg = svg("svg", {role: "img", "aria-label": "Map of the delivery vehicle on its way to you"});
    this.tiles = svg("g", {class: "tiles"});
    this.grid = svg("g", {class: "grid"});
    this.casing = svg("path", {class: "path-casing"});
    this.line = svg("path", {class: "path-line", "data-testid": "path"});
    this.dest = svg("g", {class: "destination", "data-testid": "destination"});
    this.dest.append(svg("ellipse", {class: "shadow", cx: 0, cy: 0, rx: 6, ry: 2.5}),
                     svg("path", {class: "pin", d: "M0 0C-2-7-11-11-11-21a11 11 0 1 1 22 0C11-11 2-7 0 0Z"}),
                     svg("circle", {class: "pin-eye", cx: 0, cy: -21, r: 4.2}));
    this.vehicle = svg("g", {class: "vehicle", "data-testid": "vehicle"});
    this.arrow = svg("path", {class: "arrow", d: "M0-19L6.5-10.5H-6.5Z"});
    this.vehicle.append(svg("circle", {class: "halo", r: 22}), this.arrow,
                        svg("circle", {class: "dot", r: 9}));
    this.svg.append(this.tiles, this.grid, this.casing, this.line, this.dest, this.vehicle);
    this.chip = el("div", "chip");
    this.scale = el("div", "scale");
    this.scaleBar = el("div", "scale-bar");
    this.scaleLabel = el("div", "", "");
    this.scale.append(this.scaleLabel, this.scaleBar);
    this.box.append(this.svg, this.chip, this.scale);
    if (this.config.tile_url) this.box.append(el("div", "attribution", this.config.tile_attribution || ""));
    const foot = el("div", "map-foot");
    const legend = el("div", "legend");
    legend.append(el("span", "l-vehicle", "Driver"), el("span", "l-dest", "Your address"));
    this.age = el("span", "age", "");
    foot.append(legend, this.age);
    this.card.append(this.box, foot);
    this.tileCache = new Map();
    this.view = null;   // what is drawn: {cx, cy, s (px per world unit)}
    this.car = null;    // the vehicle as drawn, mercator
    this.target = null;
    this.anim = 0;
    new ResizeObserver(() => this.target && this.draw()).observe(this.box);
    setInterval(() => this.tick(), 1000);
  }

  /** A new position from the lookup: glide the vehicle and the view there. */
  update(pos, eta) {
    const path = pos.path ? pos.path.coordinates.map(([lo, la]) => merc(lo, la)) : [];
    const car = merc(pos.lon, pos.lat);
    const dest = merc(pos.destination.lon, pos.destination.lat);
    this.pos = pos;
    this.received = performance.now();
    this.eta = eta;
    this.target = {car, dest, path, lat: pos.lat, heading: pos.heading_deg};
    this.vehicle.dataset.lon = pos.lon;
    this.vehicle.dataset.lat = pos.lat;
    const from = {view: this.view, car: this.car};
    const to = this.fit();
    if (!from.view || !this.box.clientWidth) {  // first time: no animation
      this.view = to; this.car = car; this.draw(); this.tick(); return;
    }
    cancelAnimationFrame(this.anim);
    const t0 = performance.now(), dur = 900;
    const step = now => {
      const k = ease(Math.min(1, (now - t0) / dur));
      const mix = (a, b) => a + (b - a) * k;
      this.view = {cx: mix(from.view.cx, to.cx), cy: mix(from.view.cy, to.cy),
                   s: Math.exp(mix(Math.log(from.view.s), Math.log(to.s)))};
      this.car = [mix(from.car[0], car[0]), mix(from.car[1], car[1])];
      this.draw();
      if (k < 1) this.anim = requestAnimationFrame(step);
    };
    this.anim = requestAnimationFrame(step);
    this.tick();
  }

  /** The view that shows the vehicle, the path and the destination, with room around. */
  fit() {
    const {car, dest, path, lat} = this.target;
    const pts = path.concat([car, dest]);
    const xs = pts.map(p => p[0]), ys = pts.map(p => p[1]);
    const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
    const w = this.box.clientWidth || 360, h = this.box.clientHeight || 270;
    const padX = 44, padTop = 72, padBottom = 44;  // room for the chip, the pin and the scale
    const unitsPerM = 1 / (EARTH_M * Math.cos(lat * Math.PI / 180));
    const minSpan = MIN_SPAN_M * unitsPerM;
    const s = Math.min((w - 2 * padX) / Math.max(x1 - x0, minSpan),
                       (h - padTop - padBottom) / Math.max(y1 - y0, minSpan));
    const cy = (y0 + y1) / 2 - (padTop - padBottom) / 2 / s;
    return {cx: (x0 + x1) / 2, cy, s};
  }

  px(p) {
    const w = this.box.clientWidth, h = this.box.clientHeight, v = this.view;
    return [(p[0] - v.cx) * v.s + w / 2, (p[1] - v.cy) * v.s + h / 2];
  }

  draw() {
    if (!this.target || !this.view) return;
    const w = this.box.clientWidth, h = this.box.clientHeight;
    this.svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
    const mPerPx = EARTH_M * Math.cos(this.target.lat * Math.PI / 180) / this.view.s;
    this.drawTiles(w, h);
    this.drawGrid(w, h, mPerPx);
    // From the vehicle as drawn (gliding, maybe off the route) onto the planned path.
    const pts = this.target.path.length ? [this.car].concat(this.target.path) : [];
    const d = pts.map((p, i) => {
      const [x, y] = this.px(p);
      return `${i ? "L" : "M"}${x.toFixed(1)} ${y.toFixed(1)}`;
    }).join("");
    for (const e of [this.casing, this.line]) e.setAttribute("d", d);
    const [dx, dy] = this.px(this.target.dest);
    this.dest.setAttribute("transform", `translate(${dx.toFixed(1)} ${dy.toFixed(1)})`);
    const [vx, vy] = this.px(this.car);
    this.vehicle.setAttribute("transform", `translate(${vx.toFixed(1)} ${vy.toFixed(1)})`);
    const heading = this.target.heading;
    this.arrow.setAttribute("visibility", heading === null || heading === undefined ? "hidden" : "visible");
    this.arrow.setAttribute("transform", `rotate(${heading || 0})`);
    const metres = niceMetres(mPerPx * w * 0.28);
    this.scaleBar.style.width = `${(metres / mPerPx).toFixed(1)}px`;
    this.scaleLabel.textContent = metres >= 1000 ? `${metres / 1000} km` : `${metres} m`;
  }

  drawGrid(w, h, mPerPx) {
    const step = niceMetres(mPerPx * Math.min(w, h) / 3) / mPerPx;  // px between lines
    const [ox, oy] = this.px([0, 0]);
    const lines = [];
    for (let x = ((ox % step) + step) % step; x < w; x += step) lines.push([x, 0, x, h]);
    for (let y = ((oy % step) + step) % step; y < h; y += step) lines.push([0, y, w, y]);
    this.grid.replaceChildren(...lines.map(([x1, y1, x2, y2]) =>
      svg("line", {x1: x1.toFixed(1), y1: y1.toFixed(1), x2: x2.toFixed(1), y2: y2.toFixed(1)})));
  }

  drawTiles(w, h) {
    const url = this.config.tile_url;
    if (!url) return;
    const z = Math.max(0, Math.min(19, Math.round(Math.log2(this.view.s / 256))));
    const n = 2 ** z, size = this.view.s / n;
    const [left, top] = [this.view.cx - w / 2 / this.view.s, this.view.cy - h / 2 / this.view.s];
    const keep = new Set();
    for (let tx = Math.floor(left * n); tx < (left + w / this.view.s) * n; tx++) {
      for (let ty = Math.max(0, Math.floor(top * n)); ty < Math.min(n, (top + h / this.view.s) * n); ty++) {
        const key = `${z}/${(tx % n + n) % n}/${ty}`;
        keep.add(key);
        let img = this.tileCache.get(key);
        if (!img) {
          const [kz, kx, ky] = key.split("/");
          const href = url.replace("{z}", kz).replace("{x}", kx).replace("{y}", ky)
            .replace("{s}", "abc"[(tx + ty) % 3]);
          img = svg("image", {href, preserveAspectRatio: "none"});
          this.tileCache.set(key, img);
        }
        const [x, y] = this.px([tx / n, ty / n]);
        img.setAttribute("x", x.toFixed(1)); img.setAttribute("y", y.toFixed(1));
        img.setAttribute("width", (size + 0.5).toFixed(1)); img.setAttribute("height", (size + 0.5).toFixed(1));
      }
    }
    for (const key of [...this.tileCache.keys()]) if (!keep.has(key)) this.tileCache.delete(key);
    this.tiles.replaceChildren(...keep.size ? [...keep].map(k => this.tileCache.get(k)) : []);
  }

  /** Once a second: the fix's age, and the chip. */
  tick() {
    if (!this.pos) return;
    const age = this.pos.age_s + (performance.now() - this.received) / 1000;
    const stale = age > STALE_S;
    this.vehicle.classList.toggle("stale", stale);
    this.age.classList.toggle("stale", stale);
    this.age.textContent = stale ? `Last seen ${ago(age)} — the signal may be weak`
      : `Position updated ${ago(age)}`;
    const chip = [];
    if (this.pos.remaining_m !== null && this.pos.remaining_m !== undefined) {
      chip.push(el("strong", "", this.pos.remaining_m < 60 ? "At your address"
        : `${distance(this.pos.remaining_m)} away`));
    } else {
      chip.push(el("strong", "", "On the way"));
    }
    if (this.eta) chip.push(el("div", "muted", `Arriving around ${time(this.eta)}`));
    this.chip.replaceChildren(...chip);
    this.svg.setAttribute("aria-label", this.chip.textContent);
  }

  reset() { cancelAnimationFrame(this.anim); this.view = null; this.car = null; this.target = null; this.pos = null; }
}

// --- the page ---------------------------------------------------------------------------
let map = null;
let config = {};
let current = null;   // the number on screen
let timer = 0;

function renderStatus(t) {
  const head = el("section", "card");
  head.append(el("div", "status", LABEL[t.status] || t.status));
  if (t.eta) {
    head.append(el("div", "eta", `Expected around ${time(t.eta)}` +
      (t.eta_window && t.eta_window.start ? ` (between ${time(t.eta_window.start)} and ${time(t.eta_window.end)})` : "")));
  }
  if (t.stops_before !== null && t.stops_before !== undefined) {
    head.append(el("div", "", t.stops_before === 0 ? "You are the next delivery."
      : `${t.stops_before} ${t.stops_before === 1 ? "delivery" : "deliveries"} before yours.`));
  }
  if (t.planned_window && t.planned_window.start) {
    head.append(el("div", "muted", `Planned window: ${day(t.planned_window.start)} – ${time(t.planned_window.end)}`));
  }
  if (t.pod) {
    head.append(el("div", "", `Received by ${t.pod.recipient_name} at ${day(t.pod.delivered_at)}` +
      (t.pod.condition === "damaged" ? " (reported damaged)" : "")));
  }
  if (EN_ROUTE.includes(t.status) && !t.position) {
    const hint = el("div", "hint", "The live map of the driver appears here when your delivery is next.");
    hint.dataset.testid = "map-hint";
    head.append(hint);
  }
  head.append(el("div", "muted", `Last update ${day(t.last_update)} · ${t.tracking_number}`));
  return head;
}

function renderTimeline(t) {
  const line = el("section", "card");
  const ol = el("ol", "timeline");
  const seen = Object.fromEntries(t.timeline.map(s => [s.status, s.ts]));
  const steps = ["failed", "cancelled"].includes(t.status)
    ? STEPS.filter(([k]) => seen[k]).concat([[t.status, LABEL[t.status]]]) : STEPS;
  for (const [key, label] of steps) {
    const li = el("li", seen[key] ? (key === "failed" || key === "cancelled" ? "done failed" : "done") : "");
    li.textContent = seen[key] ? `${label} · ${day(seen[key])}` : label;
    ol.append(li);
  }
  line.append(ol);
  return line;
}

function render(t) {
  const parts = [renderStatus(t)];
  if (t.position) {
    if (!map) map = new LiveMap(config);
    parts.push(map.card);
  } else if (map) {
    map.reset();
  }
  parts.push(renderTimeline(t));
  out.replaceChildren(...parts);
  if (t.position) map.update(t.position, t.eta);
}

async function lookup(number, quiet) {
  clearTimeout(timer);
  if (!quiet) out.replaceChildren(el("p", "muted", "Looking up…"));
  let next = REFRESH_IDLE_MS;
  try {
    const r = await fetch(`/v1/track/${encodeURIComponent(number)}`, {cache: "no-store"});
    if (number !== current) return;  // another number was asked for meanwhile
    if (r.ok) {
      const t = await r.json();
      render(t);
      next = t.position ? REFRESH_MAP_MS : OPEN.includes(t.status) ? REFRESH_OPEN_MS : REFRESH_IDLE_MS;
    } else if (r.status === 429) {
      next = 1000 * Math.max(5, Number(r.headers.get("Retry-After")) || 5);
      if (!quiet) out.replaceChildren(el("p", "error", "Too many lookups; please wait a moment and try again."));
    } else {
      if (map) map.reset();
      out.replaceChildren(el("p", "error", r.status === 404
        ? "We could not find a shipment with this number. Please check it."
        : "Tracking is unavailable right now; please try again later."));
    }
  } catch (err) {
    if (!quiet) out.replaceChildren(el("p", "error", "Tracking is unavailable right now; please try again later."));
  }
  timer = setTimeout(refresh, next);
}

function refresh() {
  if (!current) return;
  if (document.visibilityState !== "visible") { timer = setTimeout(refresh, 1000); return; }
  lookup(current, true);
}

function start(number) {
  current = number;
  if (map) map.reset();
  lookup(number, false);
}

document.getElementById("lookup").addEventListener("submit", ev => {
  ev.preventDefault();
  const n = input.value.trim();
  if (!n) return;
  history.replaceState(null, "", `/track/${encodeURIComponent(n)}`);
  start(n);
});

(async () => {
  try {
    const r = await fetch("/track/config");
    if (r.ok) config = await r.json();
  } catch (err) { /* the vector map needs no configuration */ }
  const fromPath = decodeURIComponent(location.pathname.replace(/^\/track\/?/, ""));
  const initial = new URLSearchParams(location.search).get("n") || fromPath;
  if (initial) { input.value = initial; start(initial); }
})();
