/* routewatch control room: live map, alerts with acknowledge, trip view, KPIs.
 * Data comes from the supervisor API with the token kept in localStorage; live updates
 * arrive over Server-Sent Events (token passed as ?access_token=, since EventSource
 * cannot send headers). */
"use strict";

const TOKEN_KEY = "routewatch.token";
const STATUS_COLOURS = { moving: "#15935a", stopped: "#3f7fd9", late: "#d98a04", off: "#d3322f", lost: "#7b8794", idle: "#a9b4c2" };
const ALERT_LABELS = {
  off_route: "Off route", unplanned_stop: "Unplanned stop", speeding: "Speeding",
  late: "Running late", signal_lost: "Signal lost", pod_review: "POD needs review",
  stop_skipped: "Stop skipped",
};
const LATE_AFTER_S = 600;

const state = {
  token: localStorage.getItem(TOKEN_KEY) || "",
  map: null, routeLayer: null, stopLayer: null, vehicleLayer: null, trackLayer: null,
  trips: new Map(), routes: new Map(), vehicles: new Map(), markers: new Map(), driverNames: new Map(),
  alerts: new Map(), alertFilter: "open,acked", maxStreamId: 0,
  selectedTrip: null, fitted: false, streams: [],
  scoreDays: 7, alertDriver: null,
};

/* ---------- helpers ---------- */

function esc(s) {
  return String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}
function hhmm(iso) {
  if (!iso) return "–";
  return new Date(iso).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", hourCycle: "h23" });
}
function ago(iso) {
  const s = Math.max(0, (Date.now() - new Date(iso).getTime()) / 1000);
  if (s < 60) return `${Math.round(s)} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return new Date(iso).toLocaleDateString();
}
function num(v, digits = 0, suffix = "") {
  return v === null || v === undefined ? "–" : `${Number(v).toFixed(digits)}${suffix}`;
}
function noteDriver(id, name) {
  if (id && name) state.driverNames.set(id, name);
}
/* The driver beside a vehicle: their name when the trips or vehicles told us, else the id. */
function driverTag(id) {
  if (!id) return "";
  const name = state.driverNames.get(id);
  return `<span class="driver" data-driver="${esc(id)}" title="driver ${esc(id)}">${esc(name || id)}</span>`;
}
function duration(s) {
  if (s === null || s === undefined) return "–";
  const m = Math.round(Math.abs(s) / 60);
  return m < 60 ? `${m} min` : `${Math.floor(m / 60)} h ${m % 60} min`;
}

async function api(path, options = {}) {
  const headers = { Authorization: `Bearer ${state.token}`, ...(options.headers || {}) };
  const res = await fetch(path, { ...options, headers });
  if (res.status === 401 || res.status === 403) {
    askToken(res.status === 403 ? "This token lacks the supervisor role." : "");
    throw new Error(`HTTP ${res.status}`);
  }
  if (!res.ok) throw new Error(`HTTP ${res.status} for ${path}`);
  return res.json();
}

/* ---------- token ---------- */

function askToken(reason) {
  const dlg = document.getElementById("token-dialog");
  if (reason) dlg.querySelector("p").textContent = reason;
  if (!dlg.open) dlg.showModal();
}
document.getElementById("token-form").addEventListener("submit", () => {
  state.token = document.getElementById("token-input").value.trim();
  localStorage.setItem(TOKEN_KEY, state.token);
  start();
});
document.getElementById("btn-token").addEventListener("click", () => askToken(""));

/* ---------- map ---------- */

async function setupMap() {
  const config = await fetch("/dashboard/config").then((r) => r.json()).catch(() => ({}));
  state.map = L.map("map", { zoomControl: true, attributionControl: Boolean(config.tile_url), preferCanvas: false });
  if (config.tile_url) {
    L.tileLayer(config.tile_url, { attribution: config.tile_attribution, maxZoom: 19 }).addTo(state.map);
  }
  L.control.scale({ imperial: false, maxWidth: 160 }).addTo(state.map);
  state.map.setView([0, 0], 2);
  state.routeLayer = L.layerGroup().addTo(state.map);
  state.trackLayer = L.layerGroup().addTo(state.map);
  state.stopLayer = L.layerGroup().addTo(state.map);
  state.vehicleLayer = L.layerGroup().addTo(state.map);
}

function vehicleStatus(v) {
  if (v.status === "signal_lost") return "lost";
  if (!v.trip_id) return "idle";
  if (v.on_route === false || v.status === "off_route") return "off";
  if ((v.schedule_delay_s ?? 0) > LATE_AFTER_S) return "late";
  if (v.status === "stopped" || (v.speed_kmh !== null && v.speed_kmh !== undefined && v.speed_kmh < 2)) return "stopped";
  return "moving";
}

function drawTrips(trips) {
  state.routeLayer.clearLayers();
  state.stopLayer.clearLayers();
  state.routes.clear();
  for (const t of trips) {
    state.trips.set(t.trip_id, t);
    noteDriver(t.driver_id, t.driver_name);
    if (!t.route) continue;
    const selected = state.selectedTrip === t.trip_id;
    const layer = L.geoJSON(t.route, {
      style: { color: selected ? "#2457d6" : "#5b6b80", weight: selected ? 6 : 4, opacity: selected ? 0.55 : 0.45, lineCap: "round" },
    }).addTo(state.routeLayer);
    layer.on("click", () => selectTrip(t.trip_id));
    state.routes.set(t.trip_id, layer);
    for (const s of t.stops || []) {
      const done = s.status === "departed" || s.status === "arrived";
      L.circleMarker([s.lat, s.lon], {
        radius: 5, weight: 2, color: done ? "#15935a" : "#5b6b80", fillColor: done ? "#15935a" : "#ffffff", fillOpacity: 1,
      }).bindTooltip(`${esc(s.stop_id)} · ${esc(s.order_id || "")} · window ${hhmm(s.window_start)}–${hhmm(s.window_end)}`)
        .addTo(state.stopLayer);
    }
  }
  fitOnce();
}

function upsertVehicle(v) {
  if (v.lat === null || v.lon === null || v.lat === undefined) return;
  state.vehicles.set(v.vehicle_id, v);
  noteDriver(v.driver_id, v.driver_name);
  const colour = STATUS_COLOURS[vehicleStatus(v)];
  let marker = state.markers.get(v.vehicle_id);
  if (!marker) {
    marker = L.circleMarker([v.lat, v.lon], { radius: 9, weight: 3, color: "#ffffff", fillOpacity: 1 })
      .bindTooltip(esc(v.vehicle_id), { permanent: true, direction: "right", offset: [9, 0], className: "vlabel" })
      .addTo(state.vehicleLayer);
    marker.on("click", () => { const cur = state.vehicles.get(v.vehicle_id); if (cur && cur.trip_id) selectTrip(cur.trip_id); });
    state.markers.set(v.vehicle_id, marker);
  }
  marker.setLatLng([v.lat, v.lon]);
  marker.setStyle({ fillColor: colour });
  marker.getElement?.()?.setAttribute("data-vehicle", v.vehicle_id);
}

function fitOnce() {
  if (state.fitted) return;
  const bounds = L.latLngBounds([]);
  state.routeLayer.eachLayer((l) => bounds.extend(l.getBounds()));
  for (const v of state.vehicles.values()) bounds.extend([v.lat, v.lon]);
  if (bounds.isValid()) {
    state.map.fitBounds(bounds, { padding: [30, 30], maxZoom: 16 });
    state.fitted = true;
  }
}

function updateSummary() {
  const vs = [...state.vehicles.values()];
  const count = (k) => vs.filter((v) => vehicleStatus(v) === k).length;
  document.getElementById("sum-vehicles").textContent = vs.length;
  document.getElementById("sum-onroute").textContent = count("moving") + count("stopped");
  document.getElementById("sum-offroute").textContent = count("off");
  document.getElementById("sum-late").textContent = count("late");
  document.getElementById("sum-alerts").textContent = [...state.alerts.values()].filter((a) => a.status === "open").length;
  const missing = vs.reduce((n, v) => n + Math.max(0, v.pings_missing ?? 0), 0);
  document.getElementById("sum-missing").textContent = missing;
  document.getElementById("chip-missing").classList.toggle("bad", missing > 0);
}

/* ---------- alerts ---------- */

function alertDetail(a) {
  const d = a.details || {};
  switch (a.type) {
    case "off_route": return d.offset_m !== undefined ? `${num(d.offset_m)} m from the planned route` : "";
    case "speeding": return d.speed_kmh !== undefined ? `${num(d.speed_kmh)} km/h in a ${num(d.limit_kmh)} km/h zone` : "";
    case "late": return d.delay_s !== undefined ? `stop ${esc(d.stop_id)} predicted ${duration(d.delay_s)} late` : "";
    case "unplanned_stop": return d.since ? `stationary since ${hhmm(d.since)}` : "";
    case "signal_lost": return d.last_ts ? `last fix ${hhmm(d.last_ts)}` : "";
    default: return "";
  }
}

const alertNodes = new Map(); // id -> {streamId, el}: reuse nodes so live updates keep an ack form being typed

function renderAlerts() {
  const list = document.getElementById("alerts");
  const wanted = state.alertFilter ? state.alertFilter.split(",") : null;
  const items = [...state.alerts.values()]
    .filter((a) => !wanted || wanted.includes(a.status))
    .filter((a) => !state.alertDriver || a.driver_id === state.alertDriver)
    .sort((a, b) => b.id - a.id)
    .slice(0, 200);
  const nodes = items.map((a) => {
    const known = alertNodes.get(a.id);
    if (known && known.streamId === a.stream_id && !a._fresh) return known.el;
    const el = alertItem(a);
    alertNodes.set(a.id, { streamId: a.stream_id, el });
    return el;
  });
  const current = [...list.children];
  if (nodes.length !== current.length || nodes.some((n, i) => n !== current[i])) {
    list.replaceChildren(...nodes);
  }
  document.getElementById("alerts-empty").style.display = items.length ? "none" : "block";
  const chip = document.getElementById("alert-driver");
  chip.hidden = !state.alertDriver;
  if (state.alertDriver) chip.querySelector("span").innerHTML = `alerts of ${driverTag(state.alertDriver)}`;
  updateSummary();
}

function alertItem(a) {
  const li = document.createElement("li");
  li.className = `alert type-${a.type} status-${a.status} sev-${a.severity}${a._fresh ? " fresh" : ""}`;
  li.dataset.alertId = a.id;
  const who = a.acked_by ? ` · acked by ${esc(a.acked_by)}${a.ack_note ? ` — “${esc(a.ack_note)}”` : ""}` : "";
  li.innerHTML = `
    <span class="bar"></span>
    <div>
      <div class="title">${esc(ALERT_LABELS[a.type] || a.type)} · ${esc(a.vehicle_id)}${a.driver_id ? ` · ${driverTag(a.driver_id)}` : ""}</div>
      <div class="meta">${esc(a.trip_id || "")} · ${hhmm(a.ts)} (${ago(a.ts)})${who}</div>
      <div class="detail">${alertDetail(a)}</div>
    </div>
    <div class="side"><span class="badge ${a.status}">${a.status}</span></div>`;
  if (a.status === "open") {
    const btn = document.createElement("button");
    btn.type = "button"; btn.className = "ghost ack"; btn.textContent = "Acknowledge";
    btn.style.marginTop = "6px"; btn.style.display = "block";
    btn.addEventListener("click", (e) => { e.stopPropagation(); showAckForm(li, a); });
    li.querySelector(".side").appendChild(btn);
  }
  li.addEventListener("click", () => { if (a.trip_id) selectTrip(a.trip_id); });
  a._fresh = false;
  return li;
}

function showAckForm(li, a) {
  if (li.querySelector(".ack-form")) return;
  const form = document.createElement("form");
  form.className = "ack-form";
  form.innerHTML = `<input name="note" placeholder="Note (optional)" maxlength="2000"><button type="submit" class="ack-confirm">Confirm</button>`;
  form.addEventListener("click", (e) => e.stopPropagation());
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    form.querySelector("button").disabled = true;
    const note = form.note.value.trim() || null;
    const updated = await api(`/v1/alerts/${a.id}/ack`, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ note }),
    });
    state.alerts.set(updated.id, updated);
    renderAlerts();
  });
  li.querySelector("div:not(.side)").appendChild(form);
  form.note.focus();
}

async function loadAlerts() {
  const params = new URLSearchParams({ limit: "200" });
  if (state.alertFilter) params.set("status", state.alertFilter);
  if (state.alertDriver) params.set("driver_id", state.alertDriver);
  const page = await api(`/v1/alerts?${params}`);
  for (const a of page.alerts) {
    state.alerts.set(a.id, a);
    state.maxStreamId = Math.max(state.maxStreamId, a.stream_id);
  }
  renderAlerts();
}

document.getElementById("alert-filter").addEventListener("click", (e) => {
  const btn = e.target.closest("button");
  if (!btn) return;
  for (const b of e.currentTarget.querySelectorAll("button")) b.classList.toggle("on", b === btn);
  state.alertFilter = btn.dataset.status;
  loadAlerts().catch(console.error);
});

/* ---------- live streams ---------- */

function setLive(ok) {
  document.getElementById("live-dot").classList.toggle("live", ok);
  document.getElementById("live-text").textContent = ok ? "live" : "reconnecting…";
}

function connectStreams() {
  for (const s of state.streams) s.close();
  const token = encodeURIComponent(state.token);
  // `after` only matters for the first connection; EventSource then resumes on its own
  // with Last-Event-ID, which the server prefers.
  const alerts = new EventSource(`/v1/alerts/stream?access_token=${token}&after=${state.maxStreamId}`);
  alerts.addEventListener("alert", (e) => {
    const a = JSON.parse(e.data);
    a._fresh = !state.alerts.has(a.id);
    state.alerts.set(a.id, a);
    state.maxStreamId = Math.max(state.maxStreamId, a.stream_id);
    renderAlerts();
  });
  alerts.onopen = () => setLive(true);
  alerts.onerror = () => setLive(false);

  const vehicles = new EventSource(`/v1/vehicles/stream?access_token=${token}`);
  const onVehicles = (e) => {
    for (const v of JSON.parse(e.data)) upsertVehicle(v);
    fitOnce();
    updateSummary();
    if (state.selectedTrip) renderTripStats();
  };
  vehicles.addEventListener("snapshot", onVehicles);
  vehicles.addEventListener("update", onVehicles);
  state.streams = [alerts, vehicles];
}

/* ---------- trip view ---------- */

async function loadTrips() {
  const trips = await api("/v1/dashboard/trips");
  state.trips.clear();
  drawTrips(trips);
  if (state.selectedTrip) renderTimeline();
}

async function selectTrip(tripId) {
  state.selectedTrip = tripId;
  const trip = state.trips.get(tripId);
  drawTrips([...state.trips.values()]);
  document.getElementById("trip-title").textContent = `Trip ${tripId}`;
  if (!trip) { document.getElementById("trip-sub").textContent = "not in the live trip list"; return; }
  document.getElementById("trip-sub").innerHTML =
    `${esc(trip.vehicle_id)}${trip.driver_id ? ` · ${driverTag(trip.driver_id)}` : ""} · ${esc(trip.status)} · planned start ${hhmm(trip.planned_start)}`;
  renderTimeline();
  renderTripStats();
  state.trackLayer.clearLayers();
  const from = new Date(new Date(trip.planned_start).getTime() - 15 * 60 * 1000).toISOString();
  try {
    const track = await api(`/v1/vehicles/${encodeURIComponent(trip.vehicle_id)}/track?from=${encodeURIComponent(from)}`);
    L.geoJSON(track, { style: { color: "#17202c", weight: 2.5, opacity: 0.85, dashArray: "1 0" } }).addTo(state.trackLayer);
  } catch (err) { console.warn("track", err); }
  const layer = state.routes.get(tripId);
  // Only move the map when the trip is not already in view: keep the fleet overview.
  if (layer && !state.map.getBounds().contains(layer.getBounds())) {
    state.map.fitBounds(layer.getBounds(), { padding: [40, 40], maxZoom: 16 });
  }
}

function renderTripStats() {
  const trip = state.trips.get(state.selectedTrip);
  if (!trip) return;
  const v = state.vehicles.get(trip.vehicle_id) || {};
  const progress = v.trip_id === trip.trip_id && v.route_m != null && trip.route_length_m
    ? (100 * v.route_m) / trip.route_length_m : null;
  const delay = v.trip_id === trip.trip_id ? v.schedule_delay_s : null;
  const tiles = [
    ["Progress", num(progress, 0, " %"), ""],
    ["Schedule", delay == null ? "–" : (delay >= 60 ? `+${duration(delay)}` : "on time"),
      delay == null ? "" : delay > LATE_AFTER_S ? "poor" : (delay >= 60 ? "mid" : "good")],
    ["Offset from route", v.offset_m == null ? "–" : `${num(v.offset_m)} m`, v.on_route === false ? "poor" : ""],
    ["Speed", num(v.speed_kmh, 0, " km/h"), ""],
    ["Pings missing", v.pings_missing == null ? "–"
      : `${v.pings_missing}${v.seq_gaps ? ` <small>in ${v.seq_gaps} gap${v.seq_gaps === 1 ? "" : "s"}</small>` : ""}`,
      v.pings_missing > 0 ? "poor" : ""],
  ];
  document.getElementById("trip-stats").innerHTML = tiles.map(([l, val, cls]) =>
    `<div class="kpi ${cls}"><div class="v">${val}</div><div class="l">${l}</div></div>`).join("");
}

function renderTimeline() {
  const trip = state.trips.get(state.selectedTrip);
  const ol = document.getElementById("timeline");
  if (!trip) { ol.replaceChildren(); return; }
  ol.innerHTML = (trip.stops || []).map((s) => {
    const late = (s.arrived_at && s.window_end && s.arrived_at > s.window_end)
      || (!s.arrived_at && s.eta && s.window_end && s.eta > s.window_end);
    const when = s.arrived_at
      ? `arrived ${hhmm(s.arrived_at)}${s.departed_at ? ` · left ${hhmm(s.departed_at)}` : ""}`
      : (s.eta ? `ETA ${hhmm(s.eta)} <span class="t">(${hhmm(s.eta_low)}–${hhmm(s.eta_high)})</span>` : "no ETA yet");
    return `<li class="${esc(s.status)}${late ? " late" : ""}">
      <div class="sid">${esc(s.stop_id)} <span class="t">${esc(s.order_id || "")}</span></div>
      <div class="t">window ${hhmm(s.window_start)}–${hhmm(s.window_end)}</div>
      <div>${when}</div></li>`;
  }).join("") || `<li><span class="t">This trip has no stops.</span></li>`;
}

/* ---------- performance ---------- */

function utcDay(offsetDays) {
  const d = new Date();
  d.setUTCHours(0, 0, 0, 0);
  d.setUTCDate(d.getUTCDate() + offsetDays);
  return d;
}

async function loadPerformance() {
  const days = [...Array(7).keys()].map((i) => utcDay(i - 6));
  const report = (from, to) => api(`/v1/reports/delivery-performance?from=${from.toISOString()}&to=${to.toISOString()}`);
  const [total, ...daily] = await Promise.all([
    report(days[0], utcDay(1)),
    ...days.map((d, i) => report(d, i < 6 ? days[i + 1] : utcDay(1))),
  ]);
  const grade = (v, good, mid) => (v == null ? "" : v >= good ? "good" : v >= mid ? "mid" : "poor");
  const tiles = [
    ["Orders delivered", num(total.orders_delivered), ""],
    ["On time", num(total.on_time_rate_pct, 0, " %"), grade(total.on_time_rate_pct, 95, 85)],
    ["Perfect deliveries", num(total.perfect_delivery_rate_pct, 0, " %"), grade(total.perfect_delivery_rate_pct, 90, 75)],
    ["POD coverage", num(total.pod_coverage_pct, 0, " %"), grade(total.pod_coverage_pct, 98, 90)],
    ["Route adherence", num(total.route_adherence_pct, 1, " %"), grade(total.route_adherence_pct, 97, 90)],
    ["Avg delay", duration(total.average_delay_s), ""],
    ["Speeding / 100 km", num(total.speeding_events_per_100km, 1), ""],
    ["Unplanned stops", `${num(total.unplanned_stop_minutes)} min`, ""],
  ];
  document.getElementById("kpis").innerHTML = tiles.map(([l, v, cls]) =>
    `<div class="kpi ${cls}"><div class="v">${v}</div><div class="l">${l}</div></div>`).join("");
  const labels = days.map((d) => d.toLocaleDateString([], { weekday: "short", timeZone: "UTC" }));
  Charts.bars(document.getElementById("chart-rates"), labels, [
    { name: "on time", color: "#2457d6", values: daily.map((r) => r.on_time_rate_pct) },
    { name: "perfect", color: "#15935a", values: daily.map((r) => r.perfect_delivery_rate_pct) },
  ], 100, "%");
  const maxOrders = Math.max(4, ...daily.map((r) => r.orders_delivered));
  Charts.bars(document.getElementById("chart-orders"), labels, [
    { name: "delivered", color: "#5b6b80", values: daily.map((r) => r.orders_delivered) },
  ], Math.ceil(maxOrders / 4) * 4, "");
}

/* ---------- driver scorecard ---------- */

async function loadScorecard() {
  const days = state.scoreDays;
  const from = utcDay(1 - days), to = utcDay(1);
  const card = await api(`/v1/reports/driver-scorecard?from=${from.toISOString()}&to=${to.toISOString()}`);
  if (days !== state.scoreDays) return; // another period was chosen meanwhile
  const label = days === 1 ? "today" : `last ${days} days`;
  document.getElementById("score-note").textContent =
    `${label} (UTC)${card.source === "continuous_aggregate" ? " · from the daily aggregate" : ""}`;
  const grade = (score) => (score == null ? "" : score >= 85 ? "good" : score >= 60 ? "mid" : "poor");
  const rows = card.drivers.map((d) => {
    noteDriver(d.driver_id, d.name);
    const cls = grade(d.score);
    const bar = d.score == null ? "–"
      : `<div class="scorebar ${cls}"><div class="track"><div class="fill" style="width:${Math.max(2, d.score)}%"></div></div><b>${num(d.score, 0)}</b></div>`;
    const hot = (v, limit) => (v != null && v > limit ? " hot" : "");
    return `<tr data-driver="${esc(d.driver_id)}" class="${state.alertDriver === d.driver_id ? "selected" : ""}">
      <td class="num">${d.rank ?? "–"}</td>
      <td class="who"><b>${esc(d.name || d.driver_id)}</b><span class="id">${esc(d.driver_id)}</span>${d.active ? "" : '<span class="off">inactive</span>'}</td>
      <td class="num">${d.trips}</td><td class="num">${d.stops_served}</td>
      <td class="num">${num(d.on_time_rate_pct, 0, " %")}</td><td class="num">${num(d.perfect_delivery_rate_pct, 0, " %")}</td>
      <td class="num">${num(d.driven_km, 1)}</td>
      <td class="num${hot(d.speeding_episodes, 0)}">${d.speeding_episodes}</td>
      <td class="num${hot(d.speeding_minutes_per_100km, 1)}">${num(d.speeding_minutes_per_100km, 1)}</td>
      <td class="num">${num(d.off_route_minutes, 0)} min</td>
      <td class="num">${d.unplanned_stops}</td>
      <td>${bar}</td></tr>`;
  });
  document.getElementById("scorecard-rows").innerHTML = rows.join("");
  document.getElementById("scorecard-empty").style.display = rows.length ? "none" : "block";
}

document.getElementById("score-period").addEventListener("click", (e) => {
  const btn = e.target.closest("button");
  if (!btn) return;
  for (const b of e.currentTarget.querySelectorAll("button")) b.classList.toggle("on", b === btn);
  state.scoreDays = Number(btn.dataset.days);
  loadScorecard().catch(console.error);
});

function filterAlertsByDriver(driverId) {
  state.alertDriver = state.alertDriver === driverId ? null : driverId;
  for (const tr of document.querySelectorAll("#scorecard-rows tr")) {
    tr.classList.toggle("selected", tr.dataset.driver === state.alertDriver);
  }
  alertNodes.clear();
  loadAlerts().catch(console.error);
}
document.getElementById("scorecard-rows").addEventListener("click", (e) => {
  const tr = e.target.closest("tr[data-driver]");
  if (tr) filterAlertsByDriver(tr.dataset.driver);
});
document.getElementById("alert-driver-clear").addEventListener("click", () => filterAlertsByDriver(state.alertDriver));

/* ---------- start ---------- */

async function start() {
  if (!state.token) { askToken(""); return; }
  try {
    await Promise.all([loadTrips(), loadAlerts()]);
  } catch (err) { console.error(err); return; }
  connectStreams();
  loadPerformance().catch(console.error);
  loadScorecard().catch(console.error);
}

setupMap().then(start);
setInterval(() => { if (state.token) loadTrips().catch(console.error); }, 30000);
setInterval(() => { if (state.token) loadPerformance().catch(console.error); }, 300000);
setInterval(() => { if (state.token) loadScorecard().catch(console.error); }, 300000);
setInterval(() => {
  if (document.querySelector(".ack-form")) return; // never wipe a note being typed
  alertNodes.clear();
  renderAlerts();
}, 60000); // keep "x min ago" fresh
