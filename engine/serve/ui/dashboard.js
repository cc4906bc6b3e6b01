// recengine dashboard: reads the domain's own API (same origin) and draws it with DOM calls.
// Every value goes into the page as a text node or an attribute value, never as markup, so a
// title like "<img onerror=...>" shows as text. No framework, no network beyond the API.
"use strict";
(() => {
  const ROOT = document.documentElement.dataset.root || "";  // the app's route prefix, e.g. /news
  const KEY_STORE = `recengine.read-key:${ROOT || "/"}`;
  const HISTORY_LIMIT = 20;
  const REFRESH_MS = 30000;
  const LOWER_IS_BETTER = new Set(["rmse", "mae"]);  // error metrics (ratings); the others: higher is better
  const SVG = "http://www.w3.org/2000/svg";
  const COLOURS = ["#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed", "#0891b2"];
  const $ = (id) => document.getElementById(id);
  let timer = null;

  // -- DOM helpers: text only ------------------------------------------------------------
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, String(value));
    for (const child of children) {
      if (child !== null && child !== undefined) node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }
  function svg(tag, attrs, text) {
    const node = document.createElementNS(SVG, tag);
    for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, String(value));
    if (text !== undefined) node.textContent = String(text);
    return node;
  }
  const clear = (node) => { node.replaceChildren(); return node; };
  const titleCell = (title) => el("td", { class: "title", title: title ?? "" }, title ?? "–");  // hover: all of it
  const show = (node, visible) => { node.hidden = !visible; };
  const pct = (x) => (x === null || x === undefined ? "–" : `${(100 * x).toFixed(1)}%`);
  const num = (x, digits = 3) => (x === null || x === undefined ? "–" : Number(x).toFixed(digits));
  const count = (x) => (x === null || x === undefined ? "–" : Number(x).toLocaleString("en"));
  const when = (iso) => (iso ? new Date(iso).toISOString().slice(0, 16).replace("T", " ") : "–");
  const hhmm = (date) => date.toISOString().slice(11, 16);
  const pValue = (p) => (p === null || p === undefined ? "p = –" : p < 0.0001 ? "p < 0.0001" : `p = ${p.toFixed(4)}`);

  // -- the key: sessionStorage, or #key=... in the fragment (never sent to the server) -----
  const readKey = () => sessionStorage.getItem(KEY_STORE);
  function takeFragment() {
    const fragment = new URLSearchParams(location.hash.slice(1));
    if (fragment.has("key")) {
      sessionStorage.setItem(KEY_STORE, fragment.get("key"));
      fragment.delete("key");  // out of the address bar and the tab's history
      const rest = fragment.toString();
      window.history.replaceState(null, "", location.pathname + location.search + (rest ? `#${rest}` : ""));
    }
    return fragment;
  }

  class Locked extends Error {}

  function lock(message) {
    show($("panels"), false);
    show($("key-status"), false);
    show($("key-panel"), true);
    $("key-message").textContent = message;
    if (timer !== null) { clearInterval(timer); timer = null; }
  }

  async function api(path, body) {
    const headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const key = readKey();
    if (key) headers.Authorization = `Bearer ${key}`;
    const response = await fetch(ROOT + path, {
      method: body === undefined ? "GET" : "POST", headers, cache: "no-store",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    let data = null;
    try { data = await response.json(); } catch (_) { data = null; }
    if (response.status === 401 || response.status === 403) {
      if (response.status === 403) sessionStorage.removeItem(KEY_STORE);
      lock(response.status === 401 ? "This domain answers reads only with one of its API keys."
        : `The key was refused: ${describe(data)}`);
      throw new Locked();
    }
    return { status: response.status, ok: response.ok, data };
  }

  function describe(data) {
    if (!data) return "no answer";
    if (Array.isArray(data.detail)) return data.detail.map((e) => `${(e.loc || []).join(".")}: ${e.msg}`).join("; ");
    return String(data.detail || data.code || "error");
  }

  // -- the model and its offline metrics ---------------------------------------------------
  function renderModel(model) {
    const parts = [`model ${model.bundle}/${model.version}`, `snapshot ${model.snapshot_version ?? "–"}`,
      `${count(model.items)} items (${count(model.cold_items)} cold)`, `${count(model.users)} users`];
    if (model.retrieval && model.retrieval.kind) parts.push(`retrieval ${model.retrieval.kind}`);
    if (model.created_at) parts.push(`trained ${when(model.created_at)}`);
    $("model-line").textContent = parts.join(" · ");
    renderOffline(model.offline);
  }

  function renderOffline(offline) {
    const head = clear($("offline-table").tHead);
    const body = clear($("offline-table").tBodies[0]);
    if (!offline) {
      $("offline-caption").textContent = "this bundle was saved without offline metrics";
      return;
    }
    const baselines = Object.keys(offline.baselines || {});
    const bits = [`protocol ${offline.protocol ?? "–"}`];
    if (offline.test_users !== null && offline.test_users !== undefined) {
      bits.push(`${count(offline.test_users)} test users`);
    }
    if (offline.best_epoch) bits.push(`best epoch ${offline.best_epoch} of ${offline.epochs_run ?? "?"}`);
    $("offline-caption").textContent = bits.join(" · ");
    head.append(el("tr", {}, el("th", {}, "metric"), el("th", { class: "num" }, "model (test)"),
      ...baselines.map((name) => el("th", { class: "num" }, `${name.replace("_", " ")} (test)`)),
      baselines.includes("popularity") ? el("th", { class: "num" }, "vs popularity") : null,
      el("th", { class: "num" }, "model (valid)")));
    for (const metric of Object.keys(offline.test).sort(byMetric)) {
      const value = offline.test[metric];
      const popular = (offline.baselines.popularity || {})[metric];
      const lift = popular ? `${value >= popular ? "+" : ""}${(100 * (value / popular - 1)).toFixed(0)}%` : "–";
      const better = popular !== undefined && (LOWER_IS_BETTER.has(metric) ? value < popular : value > popular);
      body.append(el("tr", { "data-metric": metric }, el("td", {}, metric),
        el("td", { class: better ? "num better" : "num" }, num(value)),
        ...baselines.map((name) => el("td", { class: "num" }, num((offline.baselines[name] || {})[metric]))),
        baselines.includes("popularity") ? el("td", { class: "num" }, lift) : null,
        el("td", { class: "num" }, num((offline.valid || {})[metric]))));
    }
  }

  function byMetric(a, b) {  // ndcg@10, ndcg@20, recall@10 ...: by name, then by cut-off
    const [na, ka] = a.split("@");
    const [nb, kb] = b.split("@");
    return na === nb ? Number(ka || 0) - Number(kb || 0) : na.localeCompare(nb);
  }

  // -- a user's history and recommendations ------------------------------------------------
  async function lookup(userId, historyText, k) {
    const session = historyText.split(/[\s,]+/).filter(Boolean);  // item ids, oldest first
    const status = $("lookup-status");
    if (!userId && session.length === 0) { status.textContent = "Give a user id or a session history."; return; }
    const request = { k, explain: true, log_impressions: false };  // a look, not traffic: no impressions
    if (userId) request.user_id = userId;
    if (session.length) request.history = session;
    status.textContent = "Asking…";
    const [recs, past] = await Promise.all([
      api("/recommend", request),
      userId && !session.length
        ? api(`/users/${encodeURIComponent(userId)}/history?limit=${HISTORY_LIMIT}`) : Promise.resolve(null),
    ]);
    if (session.length) renderGivenHistory(session);
    else renderHistory(past);
    if (!recs.ok) {
      status.textContent = `Recommend failed (${recs.status}): ${describe(recs.data)}`;
      clear($("recs-table").tBodies[0]);
      return;
    }
    renderRecommendations(recs.data);
    const shown = new URLSearchParams(userId ? { user: userId } : { history: session.join(",") });
    window.history.replaceState(null, "", `${location.pathname}${location.search}#${shown}`);  // a link to this view
    status.textContent = `${userId ? `User ${userId}` : "Session history"}: ${recs.data.items.length} items` +
      (recs.data.request_id ? ` · request ${recs.data.request_id}` : "");
  }

  function renderHistory(past) {
    const body = clear($("history-table").tBodies[0]);
    if (past.status === 404) {
      $("history-caption").textContent = "unknown to the model (no stored or live events)";
      return;
    }
    if (!past.ok) {
      $("history-caption").textContent = `could not be read (${past.status}): ${describe(past.data)}`;
      return;
    }
    $("history-caption").textContent = `latest ${past.data.events.length}, newest first`;
    past.data.events.forEach((event, i) => body.append(el("tr", { "data-item-id": event.item_id },
      el("td", { class: "num" }, i + 1), el("td", { class: "id" }, event.item_id), titleCell(event.title),
      el("td", {}, event.event_type ?? "–"), el("td", { class: "when" }, when(event.ts)))));
  }

  function renderGivenHistory(items) {
    const body = clear($("history-table").tBodies[0]);
    $("history-caption").textContent = `as given, ${items.length} items, newest first`;
    items.slice().reverse().forEach((item, i) => body.append(el("tr", { "data-item-id": item },
      el("td", { class: "num" }, i + 1), el("td", { class: "id" }, item), titleCell(null), el("td", {}, "session"),
      el("td", {}, "–"))));
  }

  function renderRecommendations(answer) {
    const bits = [answer.model];
    if (answer.experiment) bits.push(`experiment ${answer.experiment}, arm ${answer.arm ?? "–"}`);
    if (answer.fallback) bits.push("fallback: popular items (the model does not know this user)");
    $("recs-caption").textContent = bits.join(" · ");
    const notes = clear($("recs-notes"));
    for (const note of answer.notes || []) notes.append(el("li", {}, note));
    const body = clear($("recs-table").tBodies[0]);
    answer.items.forEach((item, i) => body.append(el("tr", { "data-item-id": item.item_id },
      el("td", { class: "num" }, i + 1), el("td", { class: "id" }, item.item_id), titleCell(item.title),
      el("td", { class: "num" }, num(item.score)),
      el("td", { class: "reasons" }, ...item.reasons.map((reason) => el("span", { class: "reason" }, reason))))));
  }

  // -- the experiment ----------------------------------------------------------------------
  async function refreshExperiment() {
    const box = $("experiment");
    const answer = await api("/experiment");
    if (answer.status === 404) {
      clear(box).append(el("p", { class: "muted", id: "no-experiment" }, "No experiment has run on this domain."));
      return;
    }
    if (!answer.ok) { clear(box).append(el("p", { class: "error" }, `Experiment: ${describe(answer.data)}`)); return; }
    renderExperiment(answer.data);
  }

  function renderExperiment(report) {
    const spec = report.experiment;
    const box = clear($("experiment"));
    const bundles = Object.fromEntries(spec.arms.map((arm) => [arm.name, arm]));
    box.append(el("p", { class: "muted" }, `${spec.id} · ${spec.mode === "ab" ? "A/B" : "interleaving"} · ` +
      `${report.status} · started ${when(spec.started_at)}` +
      (spec.stopped_at ? ` · stopped ${when(spec.stopped_at)}` : "") +
      (spec.winner ? ` · winner ${spec.winner}` : "")));
    box.append(el("p", { class: "verdict", id: "verdict" }, report.verdict));
    box.append(armsTable(report.arms, bundles, "experiment-arms"));
    if (report.ab) {
      const ab = report.ab;
      box.append(el("p", { id: "ab-test" }, `${ab.candidate} − ${ab.control}: CTR ${signedPoints(ab.difference)} ` +
        `[${signedPoints(ab.low)}, ${signedPoints(ab.high)}], lift ${pct(ab.relative_lift)}, ${pValue(ab.p_value)}` +
        ` (${ab.significant ? "significant" : "not significant"}); planned ${count(ab.planned_requests_per_arm)} ` +
        `requests per arm, ${ab.reached ? "reached" : "not reached yet"}.`));
    }
    if (report.interleaving) {
      const il = report.interleaving;
      const wins = il.arms.map((arm) => `${arm} ${count(il.wins[arm])}`).join(", ");
      box.append(el("p", { id: "interleaving-test" }, `Interleaving wins: ${wins}, ties ${count(il.ties)}; credit ` +
        `${num(il.credit)}, ${pValue(il.p_value)} (${il.significant ? "significant" : "not significant"}).`));
    }
    const series = ctrSeries(report.timeline || []);
    if (series.length) {
      box.append(el("h3", {}, "Cumulative CTR over time"));
      box.append(lineChart(series, "experiment-chart"));
    } else {
      box.append(el("p", { class: "muted" }, "No requests logged yet: the chart starts with the first one."));
    }
  }

  const signedPoints = (x) => (x === null || x === undefined ? "–"
    : `${x >= 0 ? "+" : ""}${(100 * x).toFixed(2)} pp`);

  function armsTable(arms, bundles, id) {  // per arm (or per model: then no separate model column)
    const named = arms.some((arm) => (arm.model ?? (bundles[arm.name] || {}).bundle ?? arm.name) !== arm.name);
    const heads = ["arm", ...(named ? ["model"] : []), "users", "requests", "impressions", "clicks", "CTR",
      "95% interval", "conversion", "MRR", "coverage"];
    const table = el("table", { id });
    const numeric = (i) => (i > (named ? 1 : 0) ? { class: "num" } : {});
    table.append(el("thead", {}, el("tr", {}, ...heads.map((h, i) => el("th", numeric(i), h)))));
    const body = el("tbody");
    for (const arm of arms) {
      const model = arm.model ?? (bundles[arm.name] ? bundles[arm.name].bundle : "–");
      const interval = arm.ctr_low === null || arm.ctr_low === undefined ? "–"
        : `${pct(arm.ctr_low)} – ${pct(arm.ctr_high)}`;
      body.append(el("tr", { "data-arm": arm.name }, el("td", {}, arm.name), named ? el("td", {}, model) : null,
        ...[count(arm.users), count(arm.requests), count(arm.impressions), count(arm.clicks), pct(arm.ctr), interval,
          pct(arm.conversion_rate), num(arm.mrr), pct(arm.coverage)].map((v) => el("td", { class: "num" }, v))));
    }
    table.append(body);
    return el("div", { class: "scroll" }, table);
  }

  function ctrSeries(timeline) {
    // per arm, CTR over every request up to each bucket: sum(ctr * requests) / sum(requests)
    const arms = new Map();
    for (const point of timeline.slice().sort((a, b) => a.minute.localeCompare(b.minute))) {
      if (!arms.has(point.arm)) arms.set(point.arm, { name: point.arm, points: [], requests: 0, clicked: 0 });
      const arm = arms.get(point.arm);
      if (!point.requests || point.ctr === null || point.ctr === undefined) continue;
      arm.requests += point.requests;
      arm.clicked += point.ctr * point.requests;
      arm.points.push({ t: new Date(point.minute), y: arm.clicked / arm.requests });
    }
    return [...arms.values()].filter((arm) => arm.points.length);
  }

  // -- charts: a few dozen lines of SVG ----------------------------------------------------
  const M = { left: 52, right: 16, top: 12, bottom: 28 };

  function niceCeiling(value) {  // the smallest of 1, 2, 2.5, 5 × 10^k at or above value
    const power = 10 ** Math.floor(Math.log10(value));
    return [1, 2, 2.5, 5, 10].map((f) => f * power).find((v) => v >= value * (1 - 1e-9));
  }

  function frame(id, size, yMax, yLabel) {  // the canvas, 4 grid lines and their labels
    const [w, h] = size;
    const chart = svg("svg", { viewBox: `0 0 ${w} ${h}`, class: "chart", id, role: "img" });
    for (let i = 0; i <= 4; i++) {
      const y = M.top + (h - M.top - M.bottom) * (1 - i / 4);
      chart.append(svg("line", { x1: M.left, x2: w - M.right, y1: y, y2: y, class: "grid" }));
      chart.append(svg("text", { x: M.left - 6, y: y + 4, class: "tick", "text-anchor": "end" }, yLabel(yMax * i / 4)));
    }
    return chart;
  }

  function timeAxis(chart, h, ticks) {  // [{x, t}]: first, middle and last
    for (const { x, t } of ticks) {
      chart.append(svg("text", { x, y: h - 8, class: "tick", "text-anchor": "middle" }, hhmm(t)));
    }
  }

  function lineChart(series, id) {
    const [w, h] = [1000, 240];
    const all = series.flatMap((s) => s.points);
    const yMax = 4 * niceCeiling(Math.max(0.001, ...all.map((p) => p.y)) / 4);
    const t0 = new Date(Math.min(...all.map((p) => p.t.getTime())));
    const t1 = new Date(Math.max(...all.map((p) => p.t.getTime())));
    const x = (t) => M.left + (w - M.left - M.right) * (t1 > t0 ? (t - t0) / (t1 - t0) : 0.5);
    const y = (v) => M.top + (h - M.top - M.bottom) * (1 - v / yMax);
    const chart = frame(id, [w, h], yMax, (v) => `${(100 * v).toFixed(yMax < 0.04 ? 2 : 1)}%`);
    const ticks = t1 > t0 ? [t0, new Date((t0.getTime() + t1.getTime()) / 2), t1] : [t0];
    timeAxis(chart, h, ticks.map((t) => ({ x: x(t), t })));
    series.forEach((s, i) => {
      const colour = COLOURS[i % COLOURS.length];
      const path = s.points.map((p, j) => `${j ? "L" : "M"}${x(p.t).toFixed(1)},${y(p.y).toFixed(1)}`).join(" ");
      chart.append(svg("path", { d: path, class: "line", stroke: colour, "data-arm": s.name }));
      for (const p of s.points) chart.append(svg("circle", { cx: x(p.t), cy: y(p.y), r: 2.5, fill: colour }));
      chart.append(svg("rect", { x: M.left + 8 + i * 160, y: M.top + 2, width: 10, height: 10, fill: colour }));
      chart.append(svg("text", { x: M.left + 22 + i * 160, y: M.top + 11, class: "legend" },
        `${s.name} ${pct(s.points[s.points.length - 1].y)}`));
    });
    return chart;
  }

  function barChart(counts, id) {
    const [w, h] = [600, 220];
    const yMax = 4 * niceCeiling(Math.max(1, ...counts.map((c) => c.events)) / 4);
    const times = counts.map((c) => c.minute);
    const slot = (w - M.left - M.right) / counts.length;
    const chart = frame(id, [w, h], yMax, (v) => (Number.isInteger(v) ? v.toLocaleString("en") : v.toFixed(1)));
    counts.forEach((c, i) => {
      const height = (h - M.top - M.bottom) * c.events / yMax;
      const bar = svg("rect", { x: M.left + i * slot + 0.5, y: h - M.bottom - height, width: Math.max(1, slot - 1),
        height, class: "bar", "data-events": c.events, "data-minute": c.minute.toISOString() });
      bar.append(svg("title", {}, `${hhmm(times[i])}: ${c.events} events`));
      chart.append(bar);
    });
    const ticks = [...new Set([0, Math.floor((counts.length - 1) / 2), counts.length - 1])];
    timeAxis(chart, h, ticks.map((i) => ({ x: M.left + slot * (i + 0.5), t: times[i] })));
    return chart;
  }

  // -- online figures: events per minute and per-model metrics ------------------------------
  async function refreshOnline() {
    const box = $("events-chart");
    const answer = await api("/online");
    if (answer.status === 404) {
      $("events-caption").textContent = "";
      clear(box).append(el("p", { class: "muted", id: "no-online" },
        "This server does not report online figures yet."));
      return;
    }
    if (!answer.ok) {
      clear(box).append(el("p", { class: "error" }, `Online figures: ${describe(answer.data)}`));
      return;
    }
    const summary = answer.data;
    const counts = everyMinute(summary.events_per_minute || []);
    const total = counts.reduce((sum, c) => sum + c.events, 0);
    $("events-caption").textContent = `${count(total)} events in the last ${counts.length} minutes`;
    clear(box).append(total ? barChart(counts, "events-bars")
      : el("p", { class: "muted", id: "no-events" }, `No events in the last ${counts.length} minutes.`));
    const models = clear($("online-models"));
    show(models, (summary.models || []).length > 0);
    if (!models.hidden) {
      models.append(el("h2", {}, "Online metrics per model ",
        el("span", { class: "muted" }, `last ${summary.window_hours} h, from impressions and attributed events`)));
      models.append(armsTable(summary.models, {}, "online-models-table"));
    }
  }

  function everyMinute(counts) {  // the minutes with events, as every minute of the last hour (and any older)
    const MINUTE = 60000;
    const byMinute = new Map(counts.map((c) => [Math.floor(Date.parse(c.minute) / MINUTE), c.events]));
    const latest = Math.max(Math.floor(Date.now() / MINUTE), ...byMinute.keys());
    const first = Math.min(latest - 59, ...[...byMinute.keys()].filter((m) => m > latest - 24 * 60));
    const dense = [];
    for (let m = first; m <= latest; m++) dense.push({ minute: new Date(m * MINUTE), events: byMinute.get(m) || 0 });
    return dense;
  }

  async function refreshLive() {
    try {
      await Promise.all([refreshExperiment(), refreshOnline()]);
    } catch (error) {
      if (!(error instanceof Locked)) throw error;
    }
  }

  // -- start -------------------------------------------------------------------------------
  async function start(fragment) {
    const model = await api("/model");
    if (model.ok && model.data.reads_need_key && !readKey()) {
      lock("This domain answers reads only with one of its API keys.");
      return;
    }
    show($("key-panel"), false);
    show($("key-status"), Boolean(readKey()));
    show($("panels"), true);
    if (model.ok) renderModel(model.data);
    else $("model-line").textContent = `No model: ${describe(model.data)}`;
    const user = fragment.get("user");
    const given = fragment.get("history");
    if (user || given) {
      $("user-input").value = user || "";
      $("history-input").value = given || "";
      await lookup(user || "", given || "", Number($("k-input").value));
    }
    await refreshLive();
    if (timer === null) timer = setInterval(refreshLive, REFRESH_MS);
  }

  function guarded(promise) {
    promise.catch((error) => {
      if (!(error instanceof Locked)) $("lookup-status").textContent = `Error: ${error.message}`;
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("lookup-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const k = Math.min(100, Math.max(1, Number($("k-input").value) || 10));
      guarded(lookup($("user-input").value.trim(), $("history-input").value, k));
    });
    $("key-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const key = $("key-input").value.trim();
      if (!key) return;
      sessionStorage.setItem(KEY_STORE, key);
      $("key-input").value = "";
      guarded(start(new URLSearchParams(location.hash.slice(1))));
    });
    $("forget-key").addEventListener("click", () => {
      sessionStorage.removeItem(KEY_STORE);
      guarded(start(new URLSearchParams()));
    });
    $("refresh").addEventListener("click", () => guarded(refreshLive()));
    guarded(start(takeFragment()));
  });
})();
