// The genrec web page: search, build a history by clicking items, see recommendations.
// Plain DOM and fetch, no build step; text goes in through textContent only (no HTML injection).
"use strict";

const state = { history: [] };  // [{item_id, title}], oldest first
const $ = (id) => document.getElementById(id);

async function api(path, options) {
  const response = await fetch(path, options);
  const body = await response.json();
  if (!response.ok) {
    const detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
    throw new Error(`${response.status}: ${detail}`);
  }
  return body;
}

function setStatus(el, text, kind) {
  el.textContent = text;
  el.className = "status" + (kind ? " " + kind : "");
}

function itemRow(item, { onClick, showScore = true, removable = false }) {
  const li = document.createElement("li");
  li.dataset.itemId = item.item_id;
  if (item.image) {
    const img = document.createElement("img");
    img.src = item.image;
    img.alt = "";
    li.append(img);
  }
  const title = document.createElement("span");
  title.className = "title";
  title.textContent = item.title;
  const meta = document.createElement("span");
  meta.className = "meta";
  meta.textContent = showScore && item.score !== undefined
    ? `${item.item_id} · ${item.score.toFixed(3)}` : item.item_id;
  li.append(title, meta);
  if (onClick) {
    li.classList.add("clickable");
    li.title = "add to history";
    li.addEventListener("click", () => onClick(item));
  }
  if (removable) {
    const x = document.createElement("button");
    x.className = "remove";
    x.type = "button";
    x.textContent = "×";
    x.title = "remove from history";
    x.addEventListener("click", (e) => { e.stopPropagation(); removeFromHistory(item.item_id); });
    li.append(x);
  }
  return li;
}

function fill(list, items, options) {
  list.replaceChildren(...items.map((item) => itemRow(item, options)));
}

function addToHistory(item) {
  state.history = state.history.filter((h) => h.item_id !== item.item_id);
  state.history.push({ item_id: item.item_id, title: item.title, image: item.image });
  renderHistory();
}

function removeFromHistory(itemId) {
  state.history = state.history.filter((h) => h.item_id !== itemId);
  renderHistory();
}

function renderHistory() {
  fill($("history"), state.history, { showScore: false, removable: true });
  recommend();
}

let pending = 0;  // only the latest answer is shown when requests overtake each other
async function recommend() {
  const ticket = ++pending;
  const k = Math.min(100, Math.max(1, parseInt($("k").value, 10) || 10));
  const history = state.history.map((h) => h.item_id);
  const status = $("recs-status");
  try {
    const body = await api("/recommend", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ history, k }),
    });
    if (ticket !== pending) return;
    fill($("recs"), body.items, { onClick: addToHistory });
    $("recs").dataset.history = history.join(",");  // which history the list answers
    const answered = `answered by ${body.model} in ${body.latency_ms.toFixed(1)} ms`;
    setStatus(status, body.fallback ? `popular items (${body.reason}) · ${answered}` : answered,
              body.fallback ? "fallback" : "");
  } catch (err) {
    if (ticket === pending) setStatus(status, err.message, "error");
  }
}

async function search(event) {
  event.preventDefault();
  const q = $("query").value.trim();
  const status = $("search-status");
  if (!q) { setStatus(status, "type something to search for", "error"); return; }
  try {
    const body = await api(`/search?k=20&q=${encodeURIComponent(q)}`);
    fill($("search-results"), body.items, { onClick: addToHistory });
    const note = body.note ? ` · ${body.note}` : "";
    setStatus(status, `${body.items.length} items · ${body.encoder} in ${body.latency_ms.toFixed(1)} ms${note}`);
  } catch (err) {
    setStatus(status, err.message, "error");
  }
}

async function start() {
  $("search-form").addEventListener("submit", search);
  $("clear-history").addEventListener("click", () => { state.history = []; renderHistory(); });
  $("k").addEventListener("change", recommend);
  try {
    const h = await api("/health");
    $("health").textContent = `${h.model} on ${h.dataset} · ${h.n_items.toLocaleString()} items · search: ${h.search}`;
  } catch (err) {
    $("health").textContent = err.message;
  }
  renderHistory();
}

start();
