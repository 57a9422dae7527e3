// lumos-mcp operator console. Served by lumos-mcp itself; no external asset, no inline script.
"use strict";

const state = { data: null, csrf: null, pendingKey: null, armedKey: null, timelineKey: null, fetchedAt: 0 };
const COLOURS = { apply: "#107c10", commit: "#1f5fbf", revert: "#c05a00", auto_revert: "#a4262c" };

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else if (k.startsWith("data-")) node.setAttribute(k, v);
    else node[k] = v;
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

function show(value) {
  return typeof value === "string" ? value : JSON.stringify(value);
}

function seconds(s) {
  if (s === null || s === undefined) return "-";
  const sign = s < 0 ? "-" : "";
  s = Math.abs(s);
  const m = Math.floor(s / 60);
  const r = Math.floor(s % 60);
  return `${sign}${m}:${String(r).padStart(2, "0")}`;
}

function left(deadlineIn) {
  return deadlineIn - (Date.now() / 1000 - state.fetchedAt);
}

function message(text, cls) {
  const m = document.getElementById("message");
  m.textContent = text;
  m.className = cls || "";
}

async function refresh() {
  try {
    const r = await fetch("/console/api/state", { credentials: "same-origin", cache: "no-store" });
    if (r.status === 401) { location.reload(); return; }
    const data = await r.json();
    state.data = data;
    state.csrf = data.csrf;
    state.fetchedAt = Date.now() / 1000;
    render(data);
  } catch (e) {
    message(`cannot reach the server: ${e}`, "bad");
  }
}

function render(d) {
  document.getElementById("where").textContent = `${d.mode} mode, policy ${d.policy}`;
  document.getElementById("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
  const pendingKey = d.pending.map((p) => `${p.id}:${p.digest}:${p.stale}`).join(",");
  if (pendingKey !== state.pendingKey) {
    state.pendingKey = pendingKey;
    renderPending(d.pending);
  }
  const armedKey = d.armed.map((a) => a.txid).join(",");
  if (armedKey !== state.armedKey) {
    state.armedKey = armedKey;
    renderArmed(d.armed);
  }
  renderTelemetry(document.getElementById("telemetry"), d.telemetry);
  const timelineKey = JSON.stringify([d.timeline.last_ts, Object.keys(d.timeline.knobs)]);
  if (timelineKey !== state.timelineKey) {
    state.timelineKey = timelineKey;
    renderTimeline(d.timeline);
  }
  tick();
}

function renderTelemetry(box, t) {
  box.replaceChildren();
  if (!t || t.unavailable) { box.append(el("p", { class: "empty" }, `unavailable (${t ? t.unavailable : "?"})`)); return; }
  const table = el("table", { class: "telemetry" });
  for (const [k, v] of Object.entries(t)) {
    if (k === "end_unix_s") continue;
    table.append(el("tr", {}, el("th", {}, k), el("td", { class: "mono" }, show(v))));
  }
  box.append(table);
}

function renderPending(items) {
  const box = document.getElementById("pending");
  document.getElementById("pending-count").textContent = `(${items.length})`;
  box.replaceChildren();
  if (!items.length) { box.append(el("p", { class: "empty" }, "none")); return; }
  for (const p of items) {
    const card = el("div", { class: "card approval", "data-approval": p.id, "data-tx": p.txid });
    card.append(el("h3", {}, `${p.txid}  (approval ${p.id})`));
    if (p.diff) {
      const t = el("table", { class: "diff" }, el("tr", {}, el("th", {}, "knob"), el("th", {}, "now"), el("th", {}, "proposed")));
      for (const c of p.diff) {
        t.append(el("tr", {}, el("td", { class: "mono" }, c.knob), el("td", { class: "before mono" }, show(c.before)),
          el("td", { class: "after mono" }, `${show(c.after)}${c.unit ? " " + c.unit : ""}`)));
      }
      card.append(t);
    } else {
      card.append(el("p", { class: "mono" }, p.summary));
    }
    if (p.verdict) {
      const v = p.verdict;
      const verdict = v.allowed ? (v.approval_required ? "allowed with approval" : "allowed") : "denied";
      card.append(el("p", { class: "verdict " + (v.allowed ? "ok" : "bad") },
        `Policy ${v.policy}: ${verdict}`, v.approval_reasons.length ? ` (${v.approval_reasons.join("; ")})` : "",
        v.denials.length ? `: ${v.denials.join("; ")}` : ""));
    }
    card.append(el("p", { class: "rationale" }, p.rationale ? `Agent: "${p.rationale}"` : "No rationale given."));
    if (p.stale) card.append(el("p", { class: "bad" }, "The staged change no longer matches this approval's digest."));
    card.append(el("p", {}, `Requested by ${p.requested_by}; expires in `,
      el("span", { class: "countdown expiry", "data-deadline": String(p.expires_in_s) }, seconds(p.expires_in_s))));
    const note = el("input", { type: "text", placeholder: "note (optional)", class: "note" });
    const approve = el("button", { class: "approve", type: "button" }, "Approve");
    const deny = el("button", { class: "deny", type: "button" }, "Deny");
    approve.addEventListener("click", () => decide(p, "approve", note.value, [approve, deny]));
    deny.addEventListener("click", () => decide(p, "deny", note.value, [approve, deny]));
    card.append(el("div", { class: "actions" }, approve, deny, note));
    box.append(card);
  }
}

async function decide(p, decision, note, buttons) {
  buttons.forEach((b) => { b.disabled = true; });
  try {
    const r = await fetch(`/console/api/approvals/${encodeURIComponent(p.id)}/${decision}`, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": state.csrf || "" },
      body: JSON.stringify({ digest: p.digest, note }),
    });
    const body = await r.json();
    if (r.ok) message(`${body.id}: ${body.status} (${body.txid})`, "ok");
    else message(`${decision} refused: ${body.error.code}: ${body.error.message}`, "bad");
  } catch (e) {
    message(`${decision} failed: ${e}`, "bad");
  }
  state.pendingKey = null; // render the list again, even when it is now empty
  await refresh();
}

function renderArmed(items) {
  const box = document.getElementById("armed");
  document.getElementById("armed-count").textContent = `(${items.length})`;
  box.replaceChildren();
  if (!items.length) { box.append(el("p", { class: "empty" }, "none")); return; }
  for (const a of items) {
    const card = el("div", { class: "card armed", "data-tx": a.txid });
    card.append(el("h3", {}, a.txid + (a.speculative ? " (speculative)" : "")));
    const t = el("table", {});
    for (const c of a.changes) {
      t.append(el("tr", {}, el("td", { class: "mono" }, c.knob), el("td", { class: "before mono" }, show(c.before)),
        el("td", { class: "after mono" }, show(c.after))));
    }
    card.append(t);
    card.append(el("p", {}, "auto-reverts in ",
      el("span", { class: "countdown deadline", "data-deadline": String(a.deadline_in_s) }, seconds(a.deadline_in_s))));
    box.append(card);
  }
}

function tick() {
  for (const span of document.querySelectorAll(".countdown")) {
    span.textContent = seconds(left(Number(span.getAttribute("data-deadline"))));
  }
}

function renderTimeline(tl) {
  const box = document.getElementById("timeline");
  const chain = document.getElementById("chain");
  chain.textContent = tl.verified ? "(audit chain verified)" : `(audit chain NOT verified: ${tl.error || "broken"})`;
  chain.className = tl.verified ? "ok" : "bad";
  box.replaceChildren();
  const knobs = Object.keys(tl.knobs);
  if (!knobs.length) { box.append(el("p", { class: "empty" }, "no knob changed yet")); return; }
  const legend = el("p", { class: "legend" });
  for (const [event, colour] of Object.entries(COLOURS)) {
    const s = el("span", {}, `\u25CF ${event}`);
    s.style.color = colour;
    legend.append(s);
  }
  box.append(legend);
  const t0 = tl.first_ts;
  const t1 = Math.max(tl.last_ts, t0 + 1, Date.now() / 1000);
  for (const knob of knobs) box.append(knobPlot(knob, tl.knobs[knob], tl.marks[knob] || [], t0, t1));
}

const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs) {
  const n = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, String(v));
  return n;
}

function knobPlot(knob, segs, marks, t0, t1) {
  const W = 1000, H = 120, L = 70, R = 10, T = 20, B = 20;
  const labels = new Map();
  const y = (v) => (typeof v === "number" ? v : typeof v === "boolean" ? Number(v) : v === null ? null
    : (labels.has(v) ? labels.get(v) : (labels.set(v, labels.size), labels.size - 1)));
  const values = segs.map((s) => y(s.value)).filter((v) => v !== null);
  let lo = Math.min(...values), hi = Math.max(...values);
  if (lo === hi) { lo -= 1; hi += 1; }
  const X = (t) => L + ((t - t0) / (t1 - t0)) * (W - L - R);
  const Y = (v) => T + (1 - (v - lo) / (hi - lo)) * (H - T - B);
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, width: "100%", class: "knob", "data-knob": knob });
  const title = svg("text", { x: 4, y: 14 });
  title.textContent = knob;
  root.append(title);
  for (const v of [lo, hi]) {
    const label = svg("text", { x: 4, y: Y(v) + 4 });
    label.textContent = String(Number.isInteger(v) ? v : v.toFixed(2));
    root.append(label);
  }
  let d = "";
  for (const s of segs) {
    const v = y(s.value);
    if (v === null) continue;
    const a = X(s.since === null ? t0 : s.since), b = X(s.until === null ? t1 : s.until);
    d += `M${a.toFixed(1)},${Y(v).toFixed(1)}H${b.toFixed(1)}`;
  }
  root.append(svg("path", { d, stroke: "#1d2430", "stroke-width": 2, fill: "none" }));
  for (const m of marks) {
    const v = y(m.value);
    if (v === null) continue;
    const c = svg("circle", { cx: X(m.ts), cy: Y(v), r: 5, fill: COLOURS[m.event] || "#5b6473", class: `mark ${m.event}` });
    const tip = svg("title", {});
    tip.textContent = `${m.event} ${show(m.value)} at ${new Date(m.ts * 1000).toISOString()}`;
    c.append(tip);
    root.append(c);
  }
  return root;
}

refresh();
setInterval(refresh, 2000);
setInterval(tick, 250);
