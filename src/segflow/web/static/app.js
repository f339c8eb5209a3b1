// segflow pages: plain DOM code over the JSON API and one EventSource.
// Values from the server are always set with textContent, never as HTML.
"use strict";

const DATA = JSON.parse(document.getElementById("page-data").textContent);
const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (v !== null && v !== undefined && v !== false) node.setAttribute(k, v === true ? "" : v);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

// Team mode: a signed-in page echoes the session's CSRF cookie in a header on
// every change; another site's page can neither read the cookie nor add it.
function csrfToken() {
  const match = document.cookie.match(/(?:^|;\s*)segflow_csrf=([^;]+)/);
  return match ? decodeURIComponent(match[1]) : "";
}
const SAFE_METHODS = ["GET", "HEAD", "OPTIONS"];

async function api(path, options = {}) {
  const init = { ...options, headers: { ...(options.headers || {}) } };
  if (init.json !== undefined) {
    init.body = JSON.stringify(init.json);
    init.headers["Content-Type"] = "application/json";
    delete init.json;
  }
  if (!SAFE_METHODS.includes((init.method || "GET").toUpperCase())) {
    init.headers["X-CSRF-Token"] = csrfToken();
  }
  const response = await fetch(path, init);
  if (response.status === 401 && document.body.dataset.page !== "login") {
    window.location.assign("/login");
    return new Promise(() => {});
  }
  if (response.status === 204) return null;
  const body = await response.json().catch(() => null);
  if (!response.ok) {
    const message = body && body.error ? body.error.message : `HTTP ${response.status}`;
    const error = new Error(message);
    error.body = body;
    throw error;
  }
  return body;
}

const fmt = (n) => (n === null || n === undefined ? "" : Number(n).toLocaleString("en-US"));
const when = (iso) => (iso ? new Date(iso).toLocaleString() : "never");
function debounce(fn, ms) {
  let timer = null;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}

// ------------------------------------------------------------------ live stream

const listeners = { segment: [], import: [], sync: [] };
function onLive(kind, fn) {
  listeners[kind].push(fn);
}
// Events that arrive while the page is still loading (the stream's first
// snapshot often does) wait here until the page has registered its listeners.
let heldEvents = [];
function connectLive() {
  const source = new EventSource("/api/stream");
  const dot = $("live");
  source.onopen = () => dot.classList.add("on");
  source.onerror = () => dot.classList.remove("on");
  for (const kind of Object.keys(listeners)) {
    source.addEventListener(kind, (e) => {
      const data = JSON.parse(e.data);
      if (heldEvents) heldEvents.push([kind, data]);
      else for (const fn of listeners[kind]) fn(data);
    });
  }
}
function releaseLive() {
  const held = heldEvents;
  heldEvents = null;
  for (const [kind, data] of held) for (const fn of listeners[kind]) fn(data);
}

// ------------------------------------------------------------------ segments list

async function segmentsPage() {
  const tbody = $("segments").tBodies[0];
  const rows = new Map();
  const sync = new Map();
  function badge(segmentId) {
    const states = [...sync.values()].filter((s) => s.segment_id === segmentId && !s.deleted);
    return states.map((s) => {
      const state = s.paused ? "paused" : s.last_error ? "error" : "ok";
      return el("span", { class: `badge ${state}`, title: s.paused_reason || s.last_error || "" },
        `${s.destination}: ${state}`);
    });
  }
  function render(s) {
    let tr = rows.get(s.id);
    if (s.deleted) {
      if (tr) tr.remove();
      rows.delete(s.id);
      return;
    }
    if (!tr) {
      tr = el("tr", { "data-segment": s.id },
        el("td", {}, el("a", { href: `/segments/${s.id}` }, s.name)),
        el("td", { class: "dataset" }, s.dataset || ""),
        el("td", { class: "num count" }), el("td", { class: "processed" }), el("td", { class: "sync" }));
      tbody.append(tr);
      rows.set(s.id, tr);
    }
    tr.querySelector("a").textContent = s.name;
    if (s.dataset) tr.querySelector(".dataset").textContent = s.dataset;
    tr.querySelector(".count").textContent = fmt(s.member_count);
    tr.querySelector(".processed").replaceChildren(s.error ? brokenNote(s.error) : when(s.last_processed_at));
    tr.querySelector(".sync").replaceChildren(...badge(s.id));
    $("empty").hidden = rows.size > 0;
  }
  for (const s of await api("/api/segments")) render(s);
  $("empty").hidden = rows.size > 0;
  onLive("segment", render);
  onLive("sync", (s) => {
    sync.set(s.link_id, s);
    const tr = rows.get(s.segment_id);
    if (tr) tr.querySelector(".sync").replaceChildren(...badge(s.segment_id));
  });
}

// A segment that cannot be evaluated: a short note in the list, the whole reason on hover
// and on its own page.
function brokenNote(error) {
  const words = ruleWords(error);
  const short = words.length > 70 ? `${words.slice(0, 67)}…` : words;
  return el("span", { class: "error", title: words }, `not updating: ${short}`);
}

// ------------------------------------------------------------------ rule builder

const NO_VALUE = new Set(["is_empty", "is_not_empty"]);
const LIST_VALUE = new Set(["in", "not_in"]);
const DAYS_VALUE = new Set(["within_last", "not_within_last"]);

function inputFor(type, operator) {
  if (DAYS_VALUE.has(operator)) return el("input", { type: "number", min: "0", step: "1", placeholder: "days" });
  if (LIST_VALUE.has(operator)) return el("input", { type: "text", placeholder: "a, b, c" });
  if (type === "boolean") return el("select", {}, el("option", { value: "true" }, "true"), el("option", { value: "false" }, "false"));
  if (type === "integer") return el("input", { type: "number", step: "1" });
  if (type === "number") return el("input", { type: "number", step: "any" });
  if (type === "date") return el("input", { type: "date" });
  if (type === "datetime") return el("input", { type: "datetime-local", step: "1" });
  return el("input", { type: "text" });
}

function parseValue(type, operator, raw) {
  if (DAYS_VALUE.has(operator)) return raw === "" ? null : Number(raw);
  if (LIST_VALUE.has(operator)) return raw.split(",").map((v) => v.trim()).filter((v) => v !== "").map((v) => parseValue(type, "equals", v));
  if (type === "boolean") return raw === "true";
  if (type === "integer" || type === "number") return raw === "" ? null : Number(raw);
  if (type === "datetime" && raw) return raw.length === 16 ? `${raw}:00` : raw;
  return raw;
}

class Builder {
  constructor(container, onChange) {
    this.container = container;
    this.onChange = onChange;
    this.columns = [];
  }
  setColumns(columns) {
    this.columns = columns;
  }
  column(name) {
    return this.columns.find((c) => c.name === name) || this.columns[0];
  }
  render(rules) {
    this.container.replaceChildren(this.group(rules || { logic: "AND", conditions: [] }, true));
  }
  group(node, root) {
    const box = el("div", { class: "group" });
    box.dataset.kind = "group";
    const logic = el("select", { class: "logic", "aria-label": "match" },
      el("option", { value: "AND" }, "all of (AND)"), el("option", { value: "OR" }, "any of (OR)"));
    logic.value = (node.logic || "AND").toUpperCase();
    const negate = el("input", { type: "checkbox", class: "negate" });
    negate.checked = Boolean(node.not);
    const children = el("div", { class: "children" });
    for (const child of node.conditions || []) {
      children.append(child.conditions ? this.group(child, false) : this.condition(child));
    }
    const addCondition = el("button", { type: "button", class: "add-condition", onclick: () => { children.append(this.condition(null)); this.onChange(); } }, "+ condition");
    const addGroup = el("button", { type: "button", class: "add-group", onclick: () => { children.append(this.group({ logic: "OR", conditions: [] }, false)); this.onChange(); } }, "+ group");
    const head = el("div", { class: "group-head" }, "Match ", logic, el("label", {}, negate, " not"),
      addCondition, addGroup,
      root ? null : el("button", { type: "button", class: "remove", onclick: () => { box.remove(); this.onChange(); } }, "remove group"));
    logic.addEventListener("change", this.onChange);
    negate.addEventListener("change", this.onChange);
    box.append(head, children);
    return box;
  }
  condition(node) {
    const row = el("div", { class: "condition" });
    row.dataset.kind = "condition";
    const field = el("select", { class: "field", "aria-label": "field" },
      this.columns.map((c) => el("option", { value: c.name }, `${c.name} (${c.type})`)));
    const operator = el("select", { class: "operator", "aria-label": "operator" });
    const values = el("span", { class: "values" });
    const fillOperators = () => {
      const col = this.column(field.value);
      const keep = operator.value;
      operator.replaceChildren(...col.operators.map((o) => el("option", { value: o }, o.replaceAll("_", " "))));
      if (col.operators.includes(keep)) operator.value = keep;
    };
    const fillValues = (value) => {
      const col = this.column(field.value);
      const op = operator.value;
      values.replaceChildren();
      if (NO_VALUE.has(op)) return;
      const inputs = op === "between" ? [inputFor(col.type, op), inputFor(col.type, op)] : [inputFor(col.type, op)];
      const given = op === "between" ? value || [] : [value];
      inputs.forEach((input, i) => {
        input.classList.add("value");
        const v = given[i];
        if (v !== undefined && v !== null) {
          input.value = Array.isArray(v) ? v.join(", ") : col.type === "datetime" ? String(v).slice(0, 19) : String(v);
        }
        input.addEventListener("input", this.onChange);
        input.addEventListener("change", this.onChange);
        if (i === 1) values.append(" and ");
        values.append(input);
      });
    };
    if (node) field.value = node.field;
    fillOperators();
    if (node) operator.value = node.operator;
    fillValues(node ? node.value : undefined);
    field.addEventListener("change", () => { fillOperators(); fillValues(); this.onChange(); });
    operator.addEventListener("change", () => { fillValues(); this.onChange(); });
    const remove = el("button", { type: "button", class: "remove", onclick: () => { row.remove(); this.onChange(); } }, "×");
    row.append(field, operator, values, remove);
    return row;
  }
  read(node = this.container.firstElementChild) {
    if (node.dataset.kind === "condition") {
      const field = node.querySelector(".field").value;
      const operator = node.querySelector(".operator").value;
      const type = this.column(field).type;
      const out = { field, operator };
      if (!NO_VALUE.has(operator)) {
        const inputs = [...node.querySelectorAll(".value")].map((i) => parseValue(type, operator, i.value));
        out.value = operator === "between" ? inputs : inputs[0];
      }
      return out;
    }
    const head = node.querySelector(":scope > .group-head");
    const out = {
      logic: head.querySelector(".logic").value,
      conditions: [...node.querySelector(":scope > .children").children].map((c) => this.read(c)),
    };
    if (head.querySelector(".negate").checked) out.not = true;
    return out;
  }
}

// The first condition still waiting for its value, numbered as the user sees it ("2", "3.1"), else null.
function firstBlank(node, label = "") {
  if (!node.conditions) {
    if (NO_VALUE.has(node.operator)) return null;
    const missing = (v) => v === "" || v === null || v === undefined || Number.isNaN(v);
    const value = node.value;
    const blank = Array.isArray(value) ? value.length === 0 || value.some(missing) : missing(value);
    return blank ? label : null;
  }
  for (const [i, child] of node.conditions.entries()) {
    const found = firstBlank(child, label ? `${label}.${i + 1}` : `${i + 1}`);
    if (found !== null) return found;
  }
  return null;
}

// The API names a rule's part by its path (rules.conditions[1].conditions[0].value);
// the page says "condition 2.1" as the builder shows it.
function ruleWords(message) {
  return message.replace(/\brules((?:\.conditions\[\d+\])+)(?:\.(\w+))?:/g, (_, path, part) => {
    const numbers = [...path.matchAll(/\[(\d+)\]/g)].map((m) => Number(m[1]) + 1).join(".");
    return `condition ${numbers}${part && part !== "value" ? ` (${part})` : ""}:`;
  });
}

async function setupBuilder(segment) {
  const datasetSelect = $("seg-dataset");
  const preview = $("preview");
  const builder = new Builder($("rules"), () => refresh());
  let seq = 0;
  const refresh = debounce(async () => {
    const mine = ++seq;
    const rules = builder.read();
    const blank = firstBlank(rules);
    if (blank !== null) {
      preview.replaceChildren(el("span", { class: "muted" }, `Give condition ${blank} a value to count the records it matches.`));
      return;
    }
    preview.textContent = "counting…";
    try {
      const result = await api("/api/segments/preview", {
        method: "POST",
        json: { dataset: datasetSelect.value, rules, segment_id: segment ? segment.id : null },
      });
      if (mine !== seq) return;
      const parts = [el("strong", { id: "preview-count" }, fmt(result.count)), " records match"];
      if (result.would_enter !== null) {
        parts.push(" · ", el("span", { id: "would-enter", class: "enter" }, `+${fmt(result.would_enter)} enter`),
          " / ", el("span", { id: "would-exit", class: "exit" }, `-${fmt(result.would_exit)} leave`));
      }
      preview.replaceChildren(...parts);
    } catch (error) {
      if (mine === seq) preview.replaceChildren(el("span", { class: "error" }, ruleWords(error.message)));
    }
  }, 250);
  async function loadDataset(name, rules) {
    const info = await api(`/api/datasets/${encodeURIComponent(name)}`);
    builder.setColumns(info.columns);
    builder.render(rules || { logic: "AND", conditions: [{ field: info.columns[0].name, operator: info.columns[0].operators[0] }] });
    refresh();
  }
  const all = await api("/api/datasets");
  datasetSelect.replaceChildren(...all.map((d) => el("option", { value: d.name }, d.name)));
  if (!all.length) {
    $("rules").replaceChildren(el("p", {}, "Import a dataset first: ", el("a", { href: "/datasets" }, "Datasets")));
    return;
  }
  if (segment) {
    $("seg-name").value = segment.name;
    datasetSelect.value = segment.dataset;
    datasetSelect.disabled = true;
  } else if (DATA.dataset) {
    datasetSelect.value = DATA.dataset;
  }
  datasetSelect.addEventListener("change", () => loadDataset(datasetSelect.value));
  await loadDataset(datasetSelect.value, segment ? segment.rules : null);
  $("save").addEventListener("click", async () => {
    $("save-error").textContent = "";
    const body = { name: $("seg-name").value.trim(), rules: builder.read() };
    try {
      const saved = segment
        ? await api(`/api/segments/${segment.id}`, { method: "PATCH", json: body })
        : await api("/api/segments", { method: "POST", json: { ...body, dataset: datasetSelect.value } });
      window.location.href = `/segments/${saved.id}`;
    } catch (error) {
      $("save-error").textContent = ruleWords(error.message);
    }
  });
}

// ------------------------------------------------------------------ one segment

function drawChart(container, recorded) {
  if (!recorded.length) {
    container.textContent = "No changes recorded yet.";
    return;
  }
  // The count holds from the last change until now.
  const series = [...recorded, { at: new Date().toISOString(), members: recorded[recorded.length - 1].members }];
  const W = 640, H = 160, P = 28;
  const times = series.map((p) => new Date(p.at).getTime());
  const values = series.map((p) => p.members);
  const t0 = Math.min(...times), t1 = Math.max(...times, t0 + 1);
  const vmax = Math.max(...values, 1);
  const x = (t) => P + ((t - t0) / (t1 - t0)) * (W - 2 * P);
  const y = (v) => H - P - (v / vmax) * (H - 2 * P);
  let d = `M ${x(times[0])} ${y(values[0])}`;
  for (let i = 1; i < series.length; i++) d += ` H ${x(times[i])} V ${y(values[i])}`;
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", "members over time");
  const path = document.createElementNS(ns, "path");
  path.setAttribute("d", d);
  path.setAttribute("class", "line");
  const label = (text, lx, ly, anchor) => {
    const t = document.createElementNS(ns, "text");
    t.setAttribute("x", lx);
    t.setAttribute("y", ly);
    t.setAttribute("text-anchor", anchor);
    t.textContent = text;
    return t;
  };
  svg.append(path, label(fmt(vmax), P - 4, P, "end"), label("0", P - 4, H - P, "end"),
    label(new Date(t0).toLocaleDateString(), P, H - 8, "start"),
    label(new Date(t1).toLocaleString(), W - P, H - 8, "end"));
  container.replaceChildren(svg);
}

function fillTable(table, columns, rows, append) {
  if (!append || !table.tHead.rows.length) {
    table.tHead.replaceChildren(el("tr", {}, columns.map((c) => el("th", {}, c))));
    table.tBodies[0].replaceChildren();
  }
  for (const row of rows) table.tBodies[0].append(el("tr", {}, row.map((v) => el("td", {}, v ?? ""))));
}

async function segmentPage() {
  const id = DATA.segment_id;
  let segment;
  try {
    segment = await api(`/api/segments/${id}`);
  } catch (error) {
    $("summary").textContent = error.message;
    return;
  }
  const showSummary = (s) => {
    $("title").textContent = `Segment ${s.name}`;
    $("summary").replaceChildren(el("strong", { id: "member-count" }, fmt(s.member_count)),
      ` members of dataset `, el("a", { href: `/datasets/${encodeURIComponent(segment.dataset)}` }, segment.dataset),
      ` · last processed ${when(s.last_processed_at)}`, s.error ? el("span", { class: "error" }, ` · not updating: ${ruleWords(s.error)}`) : "");
  };
  showSummary(segment);
  const loadHistory = async () => drawChart($("chart"), await api(`/api/segments/${id}/history`));
  await loadHistory();

  let cursor = null;
  const loadMembers = async (append) => {
    const page = await api(`/api/segments/${id}/members?limit=25${append && cursor ? `&cursor=${cursor}` : ""}`);
    const columns = page.items.length ? Object.keys(page.items[0].record) : [];
    fillTable($("members"), columns, page.items.map((m) => columns.map((c) => m.record[c])), append);
    cursor = page.next_cursor;
    $("more-members").hidden = cursor === null;
  };
  $("more-members").addEventListener("click", () => loadMembers(true));
  await loadMembers(false);

  const loadEvents = async () => {
    const page = await api(`/api/segments/${id}/events?limit=20`);
    $("events").tBodies[0].replaceChildren(...page.items.map((e) =>
      el("tr", {}, el("td", {}, when(e.at)), el("td", {}, explainLink(e.key)), el("td", { class: e.kind }, e.kind === "enter" ? "entered" : "left"))));
  };

  await loadEvents();

  $("explain-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const out = $("explain");
    try {
      const result = await api(`/api/segments/${id}/explain/${encodeURIComponent($("explain-key").value)}`);
      const node = (n) => n.conditions
        ? el("li", { class: n.passed ? "pass" : "fail" }, `${n.not ? "NOT " : ""}${n.logic}: ${n.passed ? "passes" : "fails"}`, el("ul", {}, n.conditions.map(node)))
        : el("li", { class: n.passed ? "pass" : "fail" }, `${n.field} ${n.operator} ${JSON.stringify(n.value ?? "")}: actual ${JSON.stringify(n.actual)} → ${n.passed ? "passes" : "fails"}`);
      out.replaceChildren(el("p", {}, `${result.key} ${result.member ? "is" : "is not"} a member; the rules ${result.matches ? "match" : "do not match"}.`), el("ul", {}, node(result.rules)));
    } catch (error) {
      out.replaceChildren(el("p", { class: "error" }, error.message));
    }
  });

  const unlinking = new Set();
  const loadLinks = async () => {
    const [statuses, all] = await Promise.all([api(`/api/segments/${id}/links`), api("/api/destinations")]);
    const idOf = Object.fromEntries(all.map((d) => [d.name, d.id]));
    const resume = (s, retryFailed) => el("button", { type: "button", class: "small", onclick: async (event) => {
      event.target.disabled = true;
      try {
        await api(`/api/segments/${id}/links/${idOf[s.destination]}/resume`, { method: "POST", json: { retry_failed: retryFailed } });
        await loadLinks();
      } catch (error) {
        event.target.disabled = false;
        $("link-error").textContent = error.message;
      }
    } }, retryFailed ? `Send ${fmt(s.failed)} refused again` : "Resume");
    const state = (s) => [s.paused ? `paused: ${s.paused_reason}` : "active",
      ...s.warnings.map((w) => el("div", { class: "warning" }, w)),
      s.paused || s.failed ? el("div", { class: "actions" }, s.paused ? resume(s, false) : null, s.failed ? resume(s, true) : null) : null];
    // Live updates redraw the table; an open "stop syncing?" question survives them.
    const unlink = (s) => {
      const cell = el("div", { class: "actions" });
      const question = () => [
        el("span", {}, `Stop syncing to ${s.destination}? It keeps the ${fmt(s.synced)} members it was sent.`),
        el("button", { type: "button", class: "small remove", onclick: async () => {
          try {
            await api(`/api/segments/${id}/links/${idOf[s.destination]}`, { method: "DELETE" });
            unlinking.delete(s.destination);
            await loadLinks();
          } catch (error) {
            cell.replaceChildren(el("span", { class: "error" }, error.message));
          }
        } }, "Unlink"),
        el("button", { type: "button", class: "small", onclick: () => { unlinking.delete(s.destination); cell.replaceChildren(ask); } }, "Cancel")];
      const ask = el("button", { type: "button", class: "small remove", onclick: () => {
        unlinking.add(s.destination);
        cell.replaceChildren(...question());
      } }, "Unlink");
      cell.replaceChildren(...(unlinking.has(s.destination) ? question() : [ask]));
      return cell;
    };
    $("links").tBodies[0].replaceChildren(...statuses.flatMap((s) => [el("tr", {},
      el("td", {}, s.destination, unlink(s)), el("td", {}, state(s)),
      el("td", { class: "num" }, fmt(s.synced), s.awaiting_google ? el("div", { class: "muted" }, `${fmt(s.awaiting_google)} awaiting Google`) : null),
      el("td", { class: "num" }, fmt(s.pending_adds)),
      el("td", { class: "num" }, fmt(s.pending_removes)), el("td", { class: "num" }, fmt(s.failed), s.failed ? refusedList(id, idOf[s.destination]) : null),
      el("td", { class: "google" }, atGoogle(s)),
      el("td", {}, when(s.last_success_at)), el("td", { class: "error" }, s.last_error || "")),
      ...(s.uploads.length ? [el("tr", { class: "uploads" }, el("td", { colspan: 9 }, uploadsTable(s.uploads, s.kind)))] : [])]));
    // Only destinations this segment is not linked to yet can be picked.
    const free = all.filter((d) => !statuses.some((s) => s.destination === d.name));
    $("link-destination").replaceChildren(...free.map((d) => el("option", { value: d.id }, `${d.name} (${d.kind})`)));
    $("link-form").hidden = free.length === 0;
    $("link-none").hidden = free.length > 0;
    $("link-none").replaceChildren(all.length
      ? "Linked to every destination. "
      : "No destinations yet. ", el("a", { href: "/destinations" }, all.length ? "Add another" : "Add one"), " on the Destinations page.");
  };
  await loadLinks();
  $("link-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    $("link-error").textContent = "";
    try {
      await api(`/api/segments/${id}/links`, { method: "POST", json: { destination_id: Number($("link-destination").value) } });
      await loadLinks();
    } catch (error) {
      $("link-error").textContent = error.message;
    }
  });

  onLive("segment", async (s) => {
    if (s.id !== id || s.deleted) return;
    showSummary({ ...segment, ...s });
    await Promise.all([loadHistory(), loadEvents(), loadMembers(false)]);
  });
  onLive("sync", (s) => { if (s.segment_id === id) loadLinks(); });
  await setupBuilder(segment);
}

// A record's key that, clicked, explains on the segment page why it is (not) a member.
function explainLink(key) {
  return el("a", { href: "#explain-form", title: "why is this record (not) a member?", onclick: () => {
    $("explain-key").value = key;
    $("explain-form").requestSubmit();
  } }, key);
}

// The members a destination refused, read when the user opens the list.
function refusedList(segmentId, destinationId) {
  const list = el("ul", { class: "refused" });
  const box = el("details", {}, el("summary", {}, "why"), list);
  box.addEventListener("toggle", async () => {
    if (!box.open || list.childElementCount) return;
    try {
      const rows = await api(`/api/segments/${segmentId}/links/${destinationId}/failed?limit=50`);
      list.replaceChildren(...rows.map((r) => el("li", {}, explainLink(r.key), `: ${r.reason}`)));
    } catch (error) {
      list.replaceChildren(el("li", { class: "error" }, error.message));
    }
  });
  return box;
}

// What the platform reported about a link: for Google the last upload's status, match
// rate and list size; Meta and TikTok answer each request at once, with what they took.
function atGoogle(s) {
  const last = s.last_upload;
  const parts = [];
  if (s.kind !== "google_ads") {
    if (last) parts.push(el("div", {}, `last upload: ${last.request_id}`));
    for (const w of (last && last.field_warnings) || []) parts.push(el("div", { class: "warning" }, w));
    return parts.length ? parts : "-";
  }
  if (last) parts.push(el("div", {}, `last upload: ${googleState(last)}`));
  const warned = last ? (last.field_warnings || []).length : 0;
  if (warned) parts.push(el("div", { class: "warning" }, `Google warned about ${fmt(warned)} field${warned === 1 ? "" : "s"} of the last upload`));
  if (s.match_rate) parts.push(el("div", {}, `match rate ${s.match_rate}`));
  if (s.list_size !== null && s.list_size !== undefined) parts.push(el("div", {}, `list: ${fmt(s.list_size)} members`));
  return parts.length ? parts : "-";
}

function googleState(u) {
  if (!u.google_status) return "not checked yet";
  return u.google_status.replace("_", " ").toLowerCase();
}

function uploadsTable(items, kind) {
  const errors = (u) => Object.entries(u.errors).map(([r, n]) => `${r} ${fmt(n)}`).join(", ") || "-";
  if (kind && kind !== "google_ads") {
    return el("details", {}, el("summary", {}, `Last uploads (${items.length})`),
      el("table", { class: "uploads" },
        el("thead", {}, el("tr", {}, ["When", "Operation", "Members", "Answer", "Warnings"].map((h) => el("th", {}, h)))),
        el("tbody", {}, items.map((u) => el("tr", {},
          el("td", {}, when(u.at)), el("td", {}, u.operation), el("td", { class: "num" }, fmt(u.members)),
          el("td", { class: "mono" }, u.request_id),
          el("td", { class: "field-warnings" }, (u.field_warnings || []).length ? u.field_warnings.map((w) => el("div", { class: "warning" }, w)) : "-"))))));
  }
  return el("details", {}, el("summary", {}, `Last uploads (${items.length})`),
    el("table", { class: "uploads" },
      el("thead", {}, el("tr", {}, ["When", "Operation", "Members", "Request id", "Google", "Errors", "Match rate", "Field warnings"].map((h) => el("th", {}, h)))),
      el("tbody", {}, items.map((u) => el("tr", {},
        el("td", {}, when(u.at)), el("td", {}, u.operation), el("td", { class: "num" }, fmt(u.members)),
        el("td", { class: "mono" }, u.request_id), el("td", {}, googleState(u)),
        el("td", {}, errors(u)), el("td", {}, u.match_rate || "-"),
        el("td", { class: "field-warnings" }, (u.field_warnings || []).length ? (u.field_warnings || []).map((w) => el("div", { class: "warning" }, w)) : "-"))))));
}

// ------------------------------------------------------------------ datasets

// One consent column of an import summary (see segflow.ingest.consent).
function consentLine(c) {
  const unrecognised = c.unrecognised ? `, ${fmt(c.unrecognised)} unrecognised, sent as denied (${c.unrecognised_examples.map((e) => JSON.stringify(e)).join(", ")})` : "";
  return `consent ${c.column} (${c.kind}): ${fmt(c.granted)} granted, ${fmt(c.denied)} denied, ${fmt(c.empty)} empty (destination's consent)${unrecognised}`;
}

function showImportSummary(container, s) {
  const rejects = (s.rejects || []).slice(0, 50);
  // replaceChildren would show a null as the text "null": drop the parts that are absent.
  container.replaceChildren(...[
    el("h3", {}, `Imported ${s.source} into `, el("a", { href: `/datasets/${encodeURIComponent(s.dataset)}` }, s.dataset)),
    el("p", { class: "import-counts" }, `${fmt(s.rows)} rows: ${fmt(s.inserted)} inserted, ${fmt(s.updated)} updated, ${fmt(s.unchanged)} unchanged, ${fmt(s.deleted)} deleted, ${fmt(s.rejected)} rejected`),
    (s.notes || []).length ? el("ul", { class: "import-notes" }, s.notes.map((n) => el("li", {}, n))) : null,
    (s.segments || []).length ? el("ul", {}, s.segments.map((o) => el("li", {}, `${o.name}: +${fmt(o.entered)} entered, -${fmt(o.exited)} left, ${fmt(o.member_count)} members`))) : null,
    rejects.length ? el("div", {}, el("h4", {}, `Rejected rows (first ${rejects.length} of ${fmt(s.rejected)})`),
      el("ul", { class: "rejects" }, rejects.map((r) => el("li", {}, `line ${r.line}: ${r.reason}`)))) : null,
    s.segments_deferred ? el("p", { class: "deferred" }, s.segments_deferred) : null,
    (s.consent || []).length ? el("ul", { class: "consent-summary" }, s.consent.map((c) => el("li", {}, consentLine(c)))) : null,
  ].filter((part) => part !== null));
}

async function datasetsPage() {
  const load = async () => {
    const all = await api("/api/datasets");
    $("datasets").tBodies[0].replaceChildren(...all.map((d) => el("tr", {},
      el("td", {}, el("a", { href: `/datasets/${encodeURIComponent(d.name)}` }, d.name)),
      el("td", { class: "num" }, fmt(d.records)), el("td", { class: "num" }, fmt(d.columns)),
      el("td", {}, d.key), el("td", {}, when(d.updated_at)))));
  };
  await load();
  const fileInput = $("file");
  let chosen = null;
  const choose = (file) => {
    chosen = file;
    $("file-name").textContent = file ? `${file.name} (${fmt(file.size)} bytes)` : "";
    if (file && !$("dataset-name").value) $("dataset-name").value = file.name.replace(/\.[^.]+$/, "").replace(/[^\w.-]+/g, "_");
  };
  fileInput.addEventListener("change", () => choose(fileInput.files[0] || null));
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    if (e.dataTransfer.files.length) choose(e.dataTransfer.files[0]);
  });
  const bar = $("upload-progress");
  const status = $("upload-status");
  const button = $("upload-button");
  // Only this page's own upload moves the bar: an event that arrives after the
  // answer (the stream can lag it) must not overwrite the answer shown.
  let inFlight = false;
  onLive("import", (p) => {
    if (!inFlight || p.dataset !== $("dataset-name").value) return;
    if (p.phase === "reading" && p.total_bytes) bar.value = (100 * p.bytes_read) / p.total_bytes;
    else bar.removeAttribute("value");  // applying: no measure of how far it is
    status.textContent = p.phase === "reading" ? `reading: ${fmt(p.rows)} rows` : `${p.phase}…`;
  });
  $("upload-form").addEventListener("submit", (event) => {
    event.preventDefault();
    if (!chosen) {
      status.textContent = "Choose a CSV file first.";
      return;
    }
    upload(false);
  });
  // confirmDelete: a replace the server refused as deleting too much, sent again confirmed.
  function upload(confirmDelete) {
    const form = new FormData();
    form.append("file", chosen);
    if ($("key").value) form.append("key", $("key").value);
    form.append("mode", $("mode").value);
    form.append("encoding", $("encoding").value);
    if ($("delimiter").value) form.append("delimiter", $("delimiter").value);
    if (confirmDelete) form.append("confirm_delete", "true");
    const xhr = new XMLHttpRequest();
    xhr.open("POST", `/api/datasets/${encodeURIComponent($("dataset-name").value)}/imports`);
    xhr.setRequestHeader("X-CSRF-Token", csrfToken());
    bar.hidden = false;
    bar.value = 0;
    inFlight = true;
    button.disabled = true;  // one import at a time from this page
    const finished = (ok) => {
      inFlight = false;
      button.disabled = false;
      if (ok) bar.value = 100;
      else bar.hidden = true;
    };
    xhr.upload.onprogress = (e) => {
      if (e.lengthComputable) bar.value = (100 * e.loaded) / e.total;
      status.textContent = `uploading: ${fmt(e.loaded)} of ${fmt(e.total)} bytes`;
    };
    xhr.upload.onload = () => {
      status.textContent = "importing…";
      bar.removeAttribute("value");
    };
    xhr.onload = async () => {
      finished(xhr.status === 201);
      let body = null;
      try { body = JSON.parse(xhr.responseText); } catch (_) { /* not JSON */ }
      if (xhr.status === 201) {
        status.textContent = "done";
        showImportSummary($("import-summary"), body);
        await load();
      } else if (body && body.error && body.error.code === "confirmation_needed") {
        confirmDeletes(status, body.error.message, () => upload(true));
      } else {
        status.replaceChildren(el("span", { class: "error" }, body && body.error ? body.error.message : `HTTP ${xhr.status}`));
      }
    };
    xhr.onerror = () => {
      finished(false);
      status.replaceChildren(el("span", { class: "error" }, "upload failed: connection lost"));
    };
    xhr.send(form);
  }
}

// The confirm step of a replace import that would delete more than the limit:
// the server's numbers, and a button that sends the same file again confirmed.
function confirmDeletes(status, message, confirm) {
  status.replaceChildren(el("div", { class: "confirm-delete" },
    el("p", { class: "error" }, message),
    el("button", { type: "button", id: "confirm-delete", onclick: (e) => { e.target.disabled = true; confirm(); } }, "Confirm the deletes and import"),
    " ",
    el("button", { type: "button", id: "cancel-delete", onclick: () => { status.textContent = "cancelled: nothing was stored"; } }, "Cancel")));
}

async function datasetPage() {
  const name = DATA.dataset;
  let info;
  try {
    info = await api(`/api/datasets/${encodeURIComponent(name)}`);
  } catch (error) {
    $("summary").textContent = error.message;
    return;
  }
  $("new-segment").href = `/segments/new?dataset=${encodeURIComponent(name)}`;
  $("summary").textContent = `${fmt(info.records)} records, key ${info.key}, updated ${when(info.updated_at)}`;
  const mapping = info.identifier_mapping;
  const role = (col) => Object.entries(mapping).filter(([k, v]) => (v === col || (Array.isArray(v) && v.includes(col))) && k !== "set_by_user" && k !== "default_region").map(([k]) => k).join(", ");
  $("columns").tBodies[0].replaceChildren(...info.columns.map((c) => el("tr", {},
    el("td", {}, c.name), el("td", {}, c.type), el("td", { class: "num" }, fmt(c.non_empty)), el("td", {}, role(c.name)))));
  $("quality").tBodies[0].replaceChildren(...info.identifier_quality.map((q) => el("tr", {},
    el("td", {}, q.kind), el("td", {}, q.column), el("td", { class: "num" }, fmt(q.valid)), el("td", { class: "num" }, fmt(q.invalid)))));
  $("consent-quality").hidden = !(info.consent_quality || []).length;
  $("consent-quality").tBodies[0].replaceChildren(...(info.consent_quality || []).map((c) => el("tr", {},
    el("td", {}, c.kind), el("td", {}, c.column), el("td", { class: "num" }, fmt(c.granted)), el("td", { class: "num" }, fmt(c.denied)),
    el("td", { class: "num" }, fmt(c.empty)),
    el("td", { class: "num", title: c.unrecognised_examples.join(", ") }, c.unrecognised ? `${fmt(c.unrecognised)} (${c.unrecognised_examples.join(", ")})` : "0"))));
  let cursor = null;
  const columns = info.columns.map((c) => c.name);
  const more = async (append) => {
    const page = await api(`/api/datasets/${encodeURIComponent(name)}/records?limit=25${append && cursor ? `&cursor=${cursor}` : ""}`);
    fillTable($("records"), columns, page.items.map((r) => columns.map((c) => r.record[c])), append);
    cursor = page.next_cursor;
    $("more-records").hidden = cursor === null;
  };
  $("more-records").addEventListener("click", () => more(true));
  await more(false);
}

// ------------------------------------------------------------------ destinations

const KIND_NAMES = { google_ads: "Google Customer Match", meta: "Meta Custom Audience", tiktok: "TikTok audience", file: "file (JSON lines)" };
const SETTING_NAMES = {
  operating_account_id: "account", login_account_id: "login account", product_destination_id: "list",
  ad_user_data: "ad user data", ad_personalization: "ad personalization", path: "file",
  ad_account_id: "ad account", audience_id: "audience", customer_file_source: "people from",
  advertiser_id: "advertiser", audience_name: "new audience", id_type: "identifier",
};

// A destination's settings in words, one a line; consent and terms as sentences.
function settingLines(settings, kind) {
  return Object.entries(settings).map(([key, value]) => {
    if (key === "terms_accepted") {
      if (kind === "file") return null;
      const terms = kind === "meta" ? "Custom Audience terms" : "Customer Match terms";
      return value ? `${terms} accepted` : `${terms} not accepted`;
    }
    if (key === "validate_only") return value ? "validate only (Google stores nothing)" : null;
    if (key === "limited_data_use") return value ? "Limited Data Use" : null;
    if (key === "send_extern_id") return value ? "dataset key sent as EXTERN_ID" : null;
    if (key === "ad_account_id") return `ad account: act_${value}`;
    return `${SETTING_NAMES[key] || key.replaceAll("_", " ")}: ${value}`;
  }).filter((line) => line !== null);
}

async function destinationsPage() {
  const load = async () => {
    const [all, linked, segs] = await Promise.all([api("/api/destinations"), api("/api/links"), api("/api/segments")]);
    const segmentId = Object.fromEntries(segs.map((g) => [g.name, g.id]));
    const feeding = (d) => linked.filter((l) => l.destination === d.name).map((l) => l.segment);
    $("destinations-empty").hidden = all.length > 0;
    $("destinations").hidden = all.length === 0;
    $("destinations").tBodies[0].replaceChildren(...all.map((d) => {
      const { credentials, ...settings } = d.config;
      const segmentsOf = feeding(d);
      return el("tr", {}, el("td", {}, d.name), el("td", {}, KIND_NAMES[d.kind] || d.kind),
        el("td", { class: "settings" }, settingLines(settings, d.kind).map((line) => el("div", {}, line))),
        el("td", {}, credentialText(credentials, d.has_credentials)),
        el("td", {}, segmentsOf.length
          ? segmentsOf.map((name) => el("div", {}, el("a", { href: `/segments/${segmentId[name]}` }, name)))
          : el("span", { class: "muted" }, "none")),
        el("td", {}, deleteButton(d, segmentsOf)));
    }));
  };
  const credentialText = (credentials, stored) => {
    if (credentials && typeof credentials === "object") return `access token ${credentials.fingerprint}`;
    return credentials || (stored ? "stored" : "-");
  };
  // Deleting asks once more in the row; a linked destination cannot go.
  const deleteButton = (d, segmentsOf) => {
    if (segmentsOf.length) {
      return el("button", { type: "button", class: "small remove", disabled: true, title: "unlink its segments first (on their pages)" }, "Delete");
    }
    const cell = el("span", { class: "actions" });
    const ask = el("button", { type: "button", class: "small remove", onclick: () => cell.replaceChildren(
      el("span", {}, `Delete ${d.name}? ${d.kind === "google_ads" ? "Its list at Google stays as it is." : d.kind === "meta" ? "Its audience at Meta stays as it is." : d.kind === "tiktok" ? "Its audience at TikTok stays as it is." : ""}`),
      el("button", { type: "button", class: "small remove", onclick: async () => {
        try {
          await api(`/api/destinations/${d.id}`, { method: "DELETE" });
          await load();
        } catch (error) {
          cell.replaceChildren(el("span", { class: "error" }, error.message));
        }
      } }, "Delete"),
      el("button", { type: "button", class: "small", onclick: () => cell.replaceChildren(ask) }, "Cancel")) }, "Delete");
    cell.append(ask);
    return cell;
  };
  await load();
  const kind = $("d-kind");
  const choice = $("d-list-choice");
  const metaChoice = $("d-meta-choice");
  const ttChoice = $("d-tt-choice");
  const toggle = () => {
    const google = kind.value === "google_ads";
    const meta = kind.value === "meta";
    const tiktok = kind.value === "tiktok";
    for (const row of document.querySelectorAll(".kind-tiktok")) row.hidden = !tiktok;
    for (const row of document.querySelectorAll(".tt-id")) row.hidden = !tiktok || ttChoice.value !== "id";
    for (const row of document.querySelectorAll(".tt-new")) row.hidden = !tiktok || ttChoice.value !== "new";
    for (const row of document.querySelectorAll(".kind-file")) row.hidden = kind.value !== "file";
    for (const row of document.querySelectorAll(".kind-google_ads")) row.hidden = !google;
    for (const row of document.querySelectorAll(".kind-meta")) row.hidden = !meta;
    for (const row of document.querySelectorAll(".kind-consent")) row.hidden = meta || tiktok;
    for (const row of document.querySelectorAll(".list-id")) row.hidden = !google || choice.value !== "id";
    for (const row of document.querySelectorAll(".list-new")) row.hidden = !google || choice.value !== "new";
    for (const row of document.querySelectorAll(".meta-id")) row.hidden = !meta || metaChoice.value !== "id";
    for (const row of document.querySelectorAll(".meta-new")) row.hidden = !meta || metaChoice.value !== "new";
  };
  kind.addEventListener("change", toggle);
  choice.addEventListener("change", toggle);
  metaChoice.addEventListener("change", toggle);
  ttChoice.addEventListener("change", toggle);
  toggle();
  const readKey = () => {
    const key = $("d-key").value.trim();
    if (!key) return null;
    try {
      return { type: "service_account", info: JSON.parse(key) };
    } catch (_) {
      throw new Error("the service-account key is not valid JSON");
    }
  };
  const listStatus = $("d-lists-status");
  const say = (text, isError) => listStatus.replaceChildren(el("span", { class: isError ? "error" : "muted" }, text));
  // The account's lists become choices of the list picker, before "enter a list id" and "create".
  $("d-load-lists").addEventListener("click", async () => {
    const account = $("d-account").value.trim();
    if (!account) {
      say("Enter the operating account id first.", true);
      return;
    }
    let credentials;
    try {
      credentials = readKey();
    } catch (error) {
      say(error.message, true);
      return;
    }
    say("Reading the account's lists from Google…", false);
    try {
      const answer = await api("/api/google-ads/lists", { method: "POST",
        json: { operating_account_id: account, login_account_id: $("d-login").value.trim() || null, credentials } });
      for (const old of [...choice.options].filter((o) => o.value.startsWith("list:"))) old.remove();
      const options = answer.lists.map((l) => el("option", { value: `list:${l.list_id}` },
        `${l.display_name} (${l.list_id})${l.size === null ? "" : `, ${fmt(l.size)} members`}`));
      choice.prepend(...options);
      if (options.length) {
        choice.value = options[0].value;
        say(`${answer.lists.length === 1 ? "1 list" : `${fmt(answer.lists.length)} lists`} in account ${answer.account}: choose one above.`, false);
      } else {
        choice.value = "new";
        say(`Account ${answer.account} has no Customer Match lists yet: create one below.`, false);
      }
      toggle();
    } catch (error) {
      say(`Could not read the account's lists: ${error.message}`, true);
    }
  });
  $("destination-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    $("d-error").textContent = "";
    const body = { name: $("d-name").value.trim(), kind: kind.value, config: {} };
    // Consent is sent only when chosen: the API refuses a google_ads destination without it.
    if ($("d-aud").value) body.config.ad_user_data = $("d-aud").value;
    if ($("d-ap").value) body.config.ad_personalization = $("d-ap").value;
    if (kind.value === "file") {
      body.config.path = $("d-path").value;
    } else if (kind.value === "meta") {
      body.config = { ad_account_id: $("d-meta-account").value.trim(),
        limited_data_use: $("d-meta-ldu").checked, send_extern_id: $("d-meta-extern").checked };
      if (metaChoice.value === "new") {
        body.config.audience_name = $("d-meta-name").value.trim();
        body.config.customer_file_source = $("d-meta-source").value;
      } else {
        body.config.audience_id = $("d-meta-audience").value.trim();
      }
      const token = $("d-meta-token").value.trim();
      if (!token) {
        $("d-error").textContent = "a Meta destination needs its access token";
        return;
      }
      body.credentials = { access_token: token };
    } else if (kind.value === "tiktok") {
      body.config = { advertiser_id: $("d-tt-advertiser").value.trim(), id_type: $("d-tt-type").value };
      if (ttChoice.value === "new") body.config.audience_name = $("d-tt-name").value.trim();
      else body.config.audience_id = $("d-tt-audience").value.trim();
      const token = $("d-tt-token").value.trim();
      if (!token) {
        $("d-error").textContent = "a TikTok destination needs its access token";
        return;
      }
      body.credentials = { access_token: token };
    } else {
      Object.assign(body.config, {
        operating_account_id: $("d-account").value, login_account_id: $("d-login").value || null,
        terms_accepted: $("d-terms").checked, validate_only: $("d-validate").checked,
      });
      if (choice.value === "new") {
        const name = $("d-new-name").value.trim();
        const days = $("d-new-days").value.trim();
        if (!name) {
          $("d-error").textContent = "the new list needs a display name";
          return;
        }
        if (days && !(/^\d+$/.test(days) && Number(days) >= 1 && Number(days) <= 540)) {
          $("d-error").textContent = `the membership duration must be 1 to 540 days, got ${days}`;
          return;
        }
        body.create_list = { display_name: name, description: $("d-new-description").value.trim() };
        if (days) body.create_list.membership_days = Number(days);
      } else {
        body.config.product_destination_id = choice.value === "id" ? $("d-list").value : choice.value.slice("list:".length);
      }
      try {
        const credentials = readKey();
        if (credentials) body.credentials = credentials;
      } catch (error) {
        $("d-error").textContent = error.message;
        return;
      }
    }
    try {
      await api("/api/destinations", { method: "POST", json: body });
      $("d-key").value = "";
      $("d-meta-token").value = "";
      $("d-tt-token").value = "";
      event.target.reset();
      for (const old of [...choice.options].filter((o) => o.value.startsWith("list:"))) old.remove();
      listStatus.replaceChildren();
      toggle();
      await load();
      await refillLists();
    } catch (error) {
      $("d-error").textContent = error.message;
    }
  });
  const refillLists = await googleLists();
}

// The Customer Match lists of a google_ads destination's account, to see what it holds.
async function googleLists() {
  const pick = $("lists-destination");
  const fill = async () => {
    const chosen = pick.value;
    const google = (await api("/api/destinations")).filter((d) => d.kind === "google_ads");
    pick.replaceChildren(...google.map((d) => el("option", { value: d.id }, d.name)));
    if (chosen && google.some((d) => String(d.id) === chosen)) pick.value = chosen;
    $("lists-none").hidden = google.length > 0;
    $("lists-form").hidden = google.length === 0;
  };
  await fill();
  $("lists-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    $("lists-error").textContent = "";
    $("lists-empty").hidden = true;
    try {
      const answer = await api(`/api/destinations/${pick.value}/lists`);
      $("google-lists").tBodies[0].replaceChildren(...answer.lists.map((l) => el("tr", {},
        el("td", {}, l.list_id === answer.current_list_id ? `${l.list_id} (this destination's)` : l.list_id),
        el("td", {}, l.display_name), el("td", { class: "num" }, fmt(l.size)),
        el("td", { class: "num" }, l.match_rate_percentage === null ? "-" : `${l.match_rate_percentage}%`),
        el("td", {}, l.membership_days === null ? "-" : `${l.membership_days} days`), el("td", {}, l.membership_status))));
      $("google-lists").hidden = answer.lists.length === 0;
      if (!answer.lists.length) {
        $("lists-empty").textContent = `Account ${answer.account} has no Customer Match lists yet.`;
        $("lists-empty").hidden = false;
      }
    } catch (error) {
      $("google-lists").hidden = true;
      $("lists-error").textContent = `Could not read the lists: ${error.message}`;
    }
  });
  return fill;
}

// ------------------------------------------------------------------ API reference

async function docsPage() {
  const spec = await api("/openapi.json");
  const out = $("operations");
  for (const [path, methods] of Object.entries(spec.paths)) {
    for (const [method, op] of Object.entries(methods)) {
      out.append(el("div", { class: "operation" }, el("code", {}, `${method.toUpperCase()} ${path}`), " ", op.summary || "",
        op.description ? el("p", {}, op.description) : null));
    }
  }
}

// ------------------------------------------------------------------ sign-in

function loginPage() {
  $("login-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    $("login-error").textContent = "";
    try {
      await api("/api/auth/login", {
        method: "POST",
        json: { name: $("login-name").value, password: $("login-password").value },
      });
      window.location.assign("/segments");
    } catch (error) {
      $("login-error").textContent = error.message;
    }
  });
}

async function showAccount() {
  const me = await api("/api/auth/me");
  if (!me.auth) return;
  const box = $("account");
  const picker = el("select", { id: "workspace", title: "workspace" },
    me.workspaces.map((name) => el("option", { value: name, selected: name === me.workspace }, name)));
  picker.addEventListener("change", async () => {
    await api("/api/auth/workspace", { method: "POST", json: { workspace: picker.value } });
    window.location.assign("/segments");
  });
  const out = el("button", { type: "button", id: "sign-out" }, "Sign out");
  out.addEventListener("click", async () => {
    await api("/api/auth/logout", { method: "POST" });
    window.location.assign("/login");
  });
  box.append(el("span", { id: "user" }, me.user), " ", picker, " ", passwordBox(), " ", out);
}

function passwordBox() {
  const current = el("input", { type: "password", id: "current-password", required: true,
    autocomplete: "current-password", placeholder: "current password" });
  const fresh = el("input", { type: "password", id: "new-password", required: true, minlength: 10,
    autocomplete: "new-password", placeholder: "new password (10+ characters)" });
  const status = el("span", { id: "password-status", role: "status" });
  const form = el("form", { id: "password-form", class: "password" }, current, fresh,
    el("button", { type: "submit", id: "password-button" }, "Change"), status);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    status.textContent = "";
    try {
      await api("/api/auth/password", { method: "POST",
        json: { current_password: current.value, new_password: fresh.value } });
      form.reset();
      status.textContent = "Changed; your other sessions were signed out.";
    } catch (error) {
      status.replaceChildren(el("span", { class: "error" }, error.message));
    }
  });
  return el("details", { id: "password" }, el("summary", {}, "Password"), form);
}

const PAGES = {
  login: loginPage,
  segments: segmentsPage,
  builder: () => setupBuilder(null),
  segment: segmentPage,
  datasets: datasetsPage,
  dataset: datasetPage,
  destinations: destinationsPage,
  docs: docsPage,
};

(async () => {
  const name = document.body.dataset.page;
  const page = PAGES[name];
  if (name !== "login") await showAccount();
  if (name !== "docs" && name !== "login") connectLive();
  try {
    if (page) await page();
  } finally {
    releaseLive();  // else a page that failed to load would hold every event from then on
  }
  document.body.dataset.ready = "true";
})();
