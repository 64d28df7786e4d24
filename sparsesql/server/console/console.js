// The sparsesql web console: plain DOM code over the HTTP API (POST /query, GET /collections).
// Credentials stay in this tab's sessionStorage and travel as the Authorization header.
"use strict";

const $ = (id) => document.getElementById(id);
let collections = [];

function authorization() {
  const token = sessionStorage.getItem("token");
  if (token) return "Bearer " + token;
  const basic = sessionStorage.getItem("basic");
  return basic ? "Basic " + basic : null;
}

async function api(method, path, body) {
  const headers = { "Content-Type": "application/json", "X-Requested-With": "sparsesql-console" };
  const auth = authorization();
  if (auth) headers.Authorization = auth;
  const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const data = await response.json().catch(() => ({ error: { message: "the server sent no JSON (HTTP " + response.status + ")" } }));
  if (!response.ok) {
    const error = new Error(data.error ? data.error.message : "HTTP " + response.status);
    error.detail = data.error || {};
    error.status = response.status;
    throw error;
  }
  return data;
}

function element(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "class") node.className = value; else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return node;
}

function showError(error) {
  const box = $("error");
  box.hidden = false;
  box.querySelector(".message").textContent = error.message + (error.detail && error.detail.sqlstate ? " [" + error.detail.sqlstate + "]" : "");
  box.querySelector(".caret").textContent = (error.detail && error.detail.caret) || "";
}

function clearError() { $("error").hidden = true; }

// A snippet's marks become <mark> elements and everything else text nodes, so a snippet is
// shown safely whatever the text holds (the console asks for it unescaped).
function marked(text) {
  const out = [];
  for (const [i, piece] of text.split(/<\/?mark>/).entries()) {
    if (piece) out.push(i % 2 ? element("mark", {}, piece) : document.createTextNode(piece));
  }
  return out;
}

function cell(value, column = "") {
  if (value === null || value === undefined) return element("td", { class: "muted" }, "null");
  if (column.startsWith("highlight_") && typeof value === "string") return element("td", {}, element("div", { class: "snippet" }, ...marked(value)));
  if (typeof value === "number") return element("td", { class: "num" }, Number.isInteger(value) ? value : value.toFixed(4));
  const text = typeof value === "object" ? JSON.stringify(value) : String(value);
  return element("td", {}, element("div", { class: "text", title: text }, text));
}

function showRows(result) {
  const box = $("results");
  box.replaceChildren();
  if (!result.columns.length) {
    box.append(element("p", { class: "muted" }, "no rows"));
    return;
  }
  const head = element("tr", {}, ...result.columns.map((c) => element("th", {}, c)));
  const body = element("tbody", {}, ...result.rows.map((row) => element("tr", {}, ...result.columns.map((c) => cell(row[c], c)))));
  box.append(element("table", {}, element("thead", {}, head), body));
  pager(result);
}

// The page control: with a cursor column, the next page is the same statement AFTER the last
// row's cursor (the HTTP answer's `next`); the first page drops it again.
function pager(result) {
  const sql = $("editor").value.replace(/\s+AFTER\s+:cursor\s*$/i, "");
  const onLater = sql !== $("editor").value;
  const bar = element("div", { id: "pager" });
  if (onLater) {
    const first = element("button", { id: "page-first", type: "button" }, "First page");
    first.addEventListener("click", () => { $("editor").value = sql; setParam("cursor", undefined); run(); });
    bar.append(first);
  }
  if (result.next && result.row_count) {
    const next = element("button", { id: "page-next", type: "button" }, "Next page");
    next.addEventListener("click", () => { $("editor").value = sql + "\nAFTER :cursor"; setParam("cursor", result.next); run(); });
    bar.append(next);
  }
  if (bar.childNodes.length) $("results").append(bar);
}

function setParam(name, value) {
  const params = JSON.parse($("params").value || "{}");
  if (value === undefined) delete params[name]; else params[name] = value;
  $("params").value = JSON.stringify(params);
}

function showStages(result) {
  const box = $("timeline");
  box.replaceChildren();
  const stages = result.stages || [];
  if (!stages.length) {
    box.append(element("p", { class: "muted" }, "no search stages (" + result.ms.toFixed(1) + " ms in all)"));
    return;
  }
  const total = stages.reduce((sum, s) => sum + (s.ms || 0), 0) || 1;
  let start = 0;
  for (const s of stages) {
    const ms = s.ms || 0;
    const bar = element("div", { class: "bar" });
    bar.style.left = (100 * start / total) + "%";
    bar.style.width = (100 * ms / total) + "%";
    const name = s.stage + (s.label ? " [" + s.label + "]" : "");
    const row = element("div", { class: "stage", title: s.detail || "" },
      element("span", { class: "name" }, name),
      element("div", { class: "track" }, bar),
      element("span", { class: "figures" }, ms.toFixed(2) + " ms, " + (s.rows === null ? "-" : s.rows) + " rows"));
    box.append(row);
    start += ms;
  }
  box.append(element("p", { class: "muted" }, "total " + result.ms.toFixed(1) + " ms (stages " + total.toFixed(1) + " ms)"));
}

async function run() {
  clearError();
  let params;
  try {
    params = JSON.parse($("params").value || "{}");
  } catch (e) {
    showError(new Error("the parameters are not JSON: " + e.message));
    return;
  }
  $("status").textContent = "running...";
  try {
    const result = await api("POST", "/query", { sql: $("editor").value, params });
    $("status").textContent = result.row_count + " rows in " + result.ms.toFixed(1) + " ms";
    showRows(result);
    showStages(result);
  } catch (error) {
    $("status").textContent = "";
    $("results").replaceChildren(element("p", { class: "muted" }, "no results: the query failed"));
    $("timeline").replaceChildren();
    showError(error);
  }
}

function textFields(c) {
  return c.settings.text_fields.length ? c.settings.text_fields : Object.keys(c.fields).filter((f) => c.fields[f] === "text");
}

// Facet counts beside the results: for each declared field that is not text (up to two), the
// search's hits grouped by it, biggest first (GROUP BY; every match for SPARSE, the candidates
// otherwise).
async function showFacets(c, signal, params) {
  const box = $("facets");
  box.replaceChildren();
  const fields = Object.keys(c.fields).filter((f) => c.fields[f] !== "text").slice(0, 2);
  for (const field of fields) {
    const sql = "SELECT \"" + field + "\", count(*) FROM " + c.name + " SEARCH " + signal + " GROUP BY \"" + field + "\" LIMIT 10";
    try {
      const result = await api("POST", "/query", { sql, params });
      const items = result.rows.map((row) => element("li", {}, String(row[field]) + " ", element("span", { class: "muted" }, "(" + row.count + ")")));
      box.append(element("div", { class: "facet", "data-field": field }, element("h3", {}, field), element("ul", {}, ...items)));
    } catch (error) {
      showError(error);
    }
  }
}

async function search(event) {
  event.preventDefault();
  const c = collections.find((x) => x.name === $("search-collection").value);
  if (!c) { showError(new Error("choose a collection first")); return; }
  const mode = $("search-mode").value;
  const signal = mode === "HYBRID" ? "HYBRID(SPARSE(:q), DENSE(:q))" : mode + "(:q)";
  const fields = textFields(c);
  const snippet = fields.length ? ["HIGHLIGHT(" + fields[fields.length - 1] + ", fragments => 2)"] : [];
  const columns = ["id", ...fields.slice(0, 1), ...snippet, "score", "cursor"].join(", ");
  $("editor").value = "SELECT " + columns + "\nFROM " + c.name + "\nSEARCH " + signal + "\nLIMIT 10";
  $("params").value = JSON.stringify({ q: $("search-text").value });
  await run();
  await showFacets(c, signal, { q: $("search-text").value });
}

function evalChart(runs) {
  const width = 260, bar = 16, gap = 6, height = runs.length * (bar + gap);
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("width", width);
  svg.setAttribute("height", height);
  svg.setAttribute("id", "eval-chart");
  runs.forEach((r, i) => {
    const rect = document.createElementNS(ns, "rect");
    rect.setAttribute("x", 0);
    rect.setAttribute("y", i * (bar + gap));
    rect.setAttribute("height", bar);
    rect.setAttribute("width", Math.max(1, (width - 60) * r["ndcg@10"]));
    rect.setAttribute("fill", "#3b6fd8");
    const label = document.createElementNS(ns, "text");
    label.setAttribute("x", (width - 60) * r["ndcg@10"] + 4);
    label.setAttribute("y", i * (bar + gap) + bar - 4);
    label.textContent = r["ndcg@10"].toFixed(3);
    const title = document.createElementNS(ns, "title");
    title.textContent = r.search;
    rect.append(title);
    svg.append(rect, label);
  });
  return svg;
}

function showCollection(c) {
  document.querySelectorAll("#collections li").forEach((li) => li.classList.toggle("selected", li.dataset.name === c.name));
  $("search-collection").value = c.name;
  const box = $("collection-detail");
  box.replaceChildren(element("h2", {}, c.name));
  const facts = [["documents", c.documents.toLocaleString()], ["fields", Object.entries(c.fields).map(([k, v]) => k + " " + v).join(", ") || "(none)"],
    ["dense", c.dense + " (" + c.dim + " dims)"], ["sparse", c.sparse_fields.map((f) => f.name + " (" + f.kind + ")").join(", ") || "bm25"],
    ["BM25", "k1 " + c.settings.k1 + ", b " + c.settings.b], ["graph", c.graph_k ? "k = " + c.graph_k : "not built"]];
  box.append(element("table", { id: "collection-facts" }, element("tbody", {}, ...facts.map(([k, v]) => element("tr", {}, element("th", {}, k), element("td", {}, v))))));
  const runs = c.eval_runs || [];
  box.append(element("h2", {}, "Evaluation"));
  if (!runs.length) {
    box.append(element("p", { class: "muted" }, "no judgments scored yet: sparsesql eval <BEIR folder> records its runs here"));
    return;
  }
  const head = element("tr", {}, ...["search", "nDCG@10", "R@100", "ms"].map((h) => element("th", {}, h)));
  const rows = runs.map((r) => element("tr", {}, element("td", {}, r.search), cell(r["ndcg@10"]), cell(r["recall@100"]), cell(r.p50_ms)));
  box.append(element("table", { id: "eval-table" }, element("thead", {}, head), element("tbody", {}, ...rows)), evalChart(runs));
}

async function loadCollections() {
  const list = $("collections");
  try {
    collections = await api("GET", "/collections");
  } catch (error) {
    list.replaceChildren(element("li", { class: "muted" }, error.message));
    return false;
  }
  list.replaceChildren(...collections.map((c) => {
    const li = element("li", {}, c.name, element("small", {}, c.documents.toLocaleString() + " documents, " + c.dense));
    li.dataset.name = c.name;
    li.addEventListener("click", () => showCollection(c));
    return li;
  }));
  $("search-collection").replaceChildren(...collections.map((c) => element("option", { value: c.name }, c.name)));
  if (collections.length) showCollection(collections[0]);
  return true;
}

async function signIn(event) {
  if (event) event.preventDefault();
  const token = $("token").value.trim();
  sessionStorage.removeItem("token");
  sessionStorage.removeItem("basic");
  if (token) sessionStorage.setItem("token", token);
  else if ($("user").value) sessionStorage.setItem("basic", btoa($("user").value + ":" + $("password").value));
  $("whoami").textContent = (await loadCollections()) ? "signed in as " + (token ? "token" : $("user").value) : "sign-in failed";
}

$("login").addEventListener("submit", signIn);
$("search").addEventListener("submit", search);
$("run").addEventListener("click", run);
$("editor").addEventListener("keydown", (e) => { if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); run(); } });
if (authorization()) loadCollections().then((ok) => { $("whoami").textContent = ok ? "signed in" : "sign-in failed"; });
