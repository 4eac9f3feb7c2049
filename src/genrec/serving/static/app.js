// The genrec web page: search, build a history by picking items (or name a known user), see
// recommendations. Plain DOM and fetch, no build step; text goes in through textContent only
// (no HTML injection).
"use strict";

const state = { history: [], user: null };  // history: [{item_id, title}], oldest first
const $ = (id) => document.getElementById(id);
const MAX_MESSAGE = 200;  // longer server messages are cut; the full text is the tooltip

// one line for a failed request: the server's detail, or each pydantic error's field and msg
function errorText(status, body) {
  const detail = body && body.detail;
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) {
    return detail.map((d) => {
      const field = (d.loc || []).filter((p) => !["body", "query", "path"].includes(p)).join(".");
      const msg = String(d.msg || "invalid").replace(/^Value error, /, "");
      return field ? `${field}: ${msg}` : msg;
    }).join("; ");
  }
  return `the server answered ${status}`;
}

async function api(path, options) {
  let response;
  try {
    response = await fetch(path, options);
  } catch (err) {
    throw new Error("cannot reach the server");
  }
  const body = await response.json().catch(() => null);
  if (!response.ok) throw new Error(errorText(response.status, body));
  return body;
}

function setStatus(el, text, kind) {
  const short = text.length > MAX_MESSAGE ? text.slice(0, MAX_MESSAGE - 1) + "…" : text;
  el.textContent = short;
  el.title = short === text ? "" : text;
  el.className = "status" + (kind ? " " + kind : "");
}

// popularity counts are whole numbers: 583, not 583.000
const formatScore = (s) => (Number.isInteger(s) ? String(s) : s.toFixed(3));

// "Star Wars (1977)" -> "Star Wars": a short example query from a title
const shortTitle = (title) =>
  title.replace(/\s*\([^)]*\)/g, "").split(/\s+/).slice(0, 4).join(" ") || title;

// a list row; with onClick the row is a button (focusable, Enter and Space pick it)
function itemRow(item, { onClick, showScore = true, removable = false }) {
  const li = document.createElement("li");
  li.dataset.itemId = item.item_id;
  const row = document.createElement(onClick ? "button" : "span");
  row.className = "row";
  if (item.image) {
    const img = document.createElement("img");
    img.src = item.image;
    img.alt = "";
    row.append(img);
  }
  const title = document.createElement("span");
  title.className = "title";
  title.textContent = item.title;
  const meta = document.createElement("span");
  meta.className = "meta";
  meta.textContent = showScore && item.score !== undefined
    ? `${item.item_id} · ${formatScore(item.score)}` : item.item_id;
  row.append(title, meta);
  if (onClick) {
    li.classList.add("clickable");
    row.type = "button";
    row.title = "add to history";
    row.addEventListener("click", () => onClick(item));
  }
  li.append(row);
  if (removable) {
    const x = document.createElement("button");
    x.className = "remove";
    x.type = "button";
    x.textContent = "×";
    x.title = "remove from history";
    x.setAttribute("aria-label", `remove ${item.title} from history`);
    x.addEventListener("click", () => removeFromHistory(item.item_id));
    li.append(x);
  }
  return li;
}

function fill(list, items, options) {
  list.replaceChildren(...items.map((item) => itemRow(item, options)));
}

function useUser(userId) {  // a known user instead of the history: one source at a time
  state.user = userId || null;
  $("user-id").value = userId;
  state.history = [];
  renderHistory();
}

function addToHistory(item) {
  if (state.user !== null) { state.user = null; $("user-id").value = ""; }
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
  const user = state.user;
  const history = state.history.map((h) => h.item_id);
  const recs = $("recs");
  const status = $("recs-status");
  try {
    const body = await api("/recommend", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(user !== null ? { user_id: user, k } : { history, k }),
    });
    if (ticket !== pending) return;
    fill(recs, body.items, { onClick: addToHistory });
    // what the list answers, for anyone (tests) waiting on it
    recs.dataset.user = user ?? "";
    recs.dataset.history = user !== null ? "" : history.join(",");
    const answered = `answered by ${body.model} in ${body.latency_ms.toFixed(1)} ms`;
    const who = user !== null ? `user ${user} · ` : "";
    setStatus(status, body.fallback ? `popular items (${body.reason}) · ${answered}`
      : who + answered, body.fallback ? "fallback" : "");
  } catch (err) {
    if (ticket !== pending) return;
    recs.replaceChildren();  // no stale list under an error
    delete recs.dataset.user;
    delete recs.dataset.history;
    setStatus(status, err.message, "error");
  }
}

async function search(event) {
  event.preventDefault();
  const q = $("query").value.trim();
  const status = $("search-status");
  const results = $("search-results");
  if (!q) {
    results.replaceChildren();
    setStatus(status, "type something to search for", "error");
    return;
  }
  try {
    const body = await api(`/search?k=20&q=${encodeURIComponent(q)}`);
    fill(results, body.items, { onClick: addToHistory });
    const note = body.note ? ` · ${body.note}` : "";
    setStatus(status, `${body.items.length} items · ${body.encoder} in ${body.latency_ms.toFixed(1)} ms${note}`);
  } catch (err) {
    results.replaceChildren();  // no stale results under an error
    setStatus(status, err.message, "error");
  }
}

async function start() {
  $("search-form").addEventListener("submit", search);
  $("user-form").addEventListener("submit", (e) => { e.preventDefault(); useUser($("user-id").value.trim()); });
  $("clear-history").addEventListener("click", () => useUser(""));
  $("k").addEventListener("change", recommend);
  try {
    const h = await api("/health");
    $("health").textContent = `${h.model} on ${h.dataset} · ${h.n_items.toLocaleString()} items · search: ${h.search}`;
    if (h.example_title) $("query").placeholder = `search items, e.g. ${shortTitle(h.example_title)}`;
    if (h.example_user_id) $("user-id").placeholder = `or a known user id, e.g. ${h.example_user_id}`;
  } catch (err) {
    $("health").textContent = err.message;
  }
  renderHistory();
}

start();
