// Ferry dashboard: re-fetch the server-rendered fragments when the job event stream (GET /events)
// says something changed, and send the replay/purge/redeliver actions with the session's CSRF
// token. No framework, no build.
"use strict";

const POLL_MS = 2000; // only while the event stream is down, and while a webhook delivery is open
const REFRESH_MS = 1000; // at most one re-fetch a second, however many events arrive
const FLEET_MS = 3000; // heartbeats, 429 pauses and parked steps are no job events: these panels poll
const EVENT_TYPES = ["job.queued", "step.started", "step.succeeded", "step.retrying", "job.succeeded",
  "job.failed", "job.cancelled", "job.replayed"];
const meta = document.querySelector('meta[name="csrf-token"]');
const csrf = meta ? meta.content : "";
const page = document.body.dataset.page;
const selected = new Set();

async function call(method, url, body) {
  const response = await fetch(url, {
    method,
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = response.status === 204 ? {} : await response.json().catch(() => ({}));
  if (!response.ok) {
    const detail = typeof data.detail === "string" ? data.detail : response.statusText;
    throw new Error(detail || `HTTP ${response.status}`);
  }
  return data;
}

function say(id, text, kind, extra) {
  const el = document.getElementById(id);
  if (!el) return;
  el.className = "message" + (kind ? " " + kind : "");
  el.textContent = text;
  for (const node of extra || []) el.append(node);
}

function button(label, onClick, cls) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = label;
  if (cls) b.className = cls;
  b.addEventListener("click", onClick);
  return b;
}

// ---- live updates -------------------------------------------------------------------------
let busy = false;
async function refresh() {
  const url = document.body.dataset.fragment;
  if (!url || busy || document.hidden) return;
  busy = true;
  const live = document.getElementById("live");
  try {
    const response = await fetch(url, { credentials: "same-origin" });
    if (response.status === 401) { window.location.href = "/login?next=" + encodeURIComponent(location.pathname + location.search); return; }
    if (!response.ok) throw new Error(response.statusText);
    const regions = await response.json();
    for (const [id, html] of Object.entries(regions)) {
      const el = document.getElementById(id);
      if (el && typeof html === "string" && el.innerHTML !== html) el.innerHTML = html;
    }
    if (regions.status) document.body.dataset.status = regions.status;
    if (regions.open_deliveries) setTimeout(refresh, POLL_MS); // deliveries are not job events
    restoreSelection();
    if (live) { live.classList.remove("stale"); live.textContent = "live"; }
  } catch (err) {
    if (live) { live.classList.add("stale"); live.textContent = "reconnecting"; }
  } finally {
    busy = false;
  }
}

// The stream names what changed; the page re-fetches its fragments (one per REFRESH_MS at most).
// While the stream is down the page polls, and the browser reconnects on its own, sending
// Last-Event-ID; on (re)opening, one re-fetch catches up with whatever happened meanwhile.
let scheduled = null;
function soon() {
  if (scheduled) return;
  scheduled = setTimeout(() => { scheduled = null; refresh(); }, REFRESH_MS);
}

let polling = null;
function poll(on) {
  if (on && !polling) polling = setInterval(refresh, POLL_MS);
  if (!on && polling) { clearInterval(polling); polling = null; }
}

function listen() {
  if (!document.body.dataset.fragment) return;
  if (document.getElementById("workers-panel") || document.getElementById("connections-panel")) {
    setInterval(refresh, FLEET_MS);
  }
  if (!window.EventSource) { poll(true); return; }
  const job = document.body.dataset.job;
  const source = new EventSource("/events" + (job ? "?job=" + encodeURIComponent(job) : ""));
  source.addEventListener("open", () => { poll(false); soon(); });
  source.addEventListener("error", () => {
    poll(true);
    const live = document.getElementById("live");
    if (live) { live.classList.add("stale"); live.textContent = "reconnecting"; }
  });
  for (const type of EVENT_TYPES) source.addEventListener(type, soon);
  if (job) source.addEventListener("step.progress", soon); // the job page's upload bar, live
}
listen();
document.addEventListener("visibilitychange", refresh);

// ---- the list -----------------------------------------------------------------------------
function restoreSelection() {
  for (const box of document.querySelectorAll("#rows input.pick")) {
    box.checked = selected.has(box.value);
  }
  const count = document.getElementById("selected-count");
  if (count) count.textContent = String(selected.size);
  const replaySelected = document.getElementById("replay-selected");
  if (replaySelected) replaySelected.disabled = selected.size === 0;
}

function currentFilters() {
  const raw = JSON.parse(document.body.dataset.filters || "{}");
  delete raw.cursor;
  if (raw.http_status) raw.http_status = Number(raw.http_status);
  return raw;
}

function describe(filters, defaultStatus) {
  const parts = Object.entries(filters).map(([k, v]) => `${k}=${v}`);
  if (!filters.status) parts.unshift(`status=${defaultStatus}`);
  return parts.join(", ");
}

const BULK = {
  replay: { url: "/jobs:replay", verb: "Replay", status: "failed", cls: "primary" },
  purge: { url: "/jobs:purge", verb: "Delete", status: "failed", cls: "danger" },
  cancel: { url: "/jobs:cancel", verb: "Cancel", status: "queued", cls: "danger" },
};

function bulkDone(kind, done) {
  if (kind === "replay") return `Replaying ${done.matched} job(s) at ${done.rate}/s (about ${done.estimated_seconds} s).`;
  if (kind === "cancel") return `Cancelled ${done.cancelled} job(s)` + (done.cancelling ? `; ${done.cancelling} stop after their running step.` : ".");
  return `Deleted ${done.deleted} job(s)` + (done.skipped ? `, kept ${done.skipped} still running.` : ".");
}

async function bulk(kind) {
  const filters = currentFilters();
  delete filters.q;
  const spec = BULK[kind];
  const url = spec.url;
  say("bulk-message", "Counting…");
  try {
    const dry = await call("POST", url, { ...filters, dry_run: true });
    if (!dry.matched) { say("bulk-message", `No jobs match (${describe(filters, spec.status)}).`); return; }
    const go = button(`${spec.verb} ${dry.matched}`, async () => {
      say("bulk-message", "Working…");
      try {
        const done = await call("POST", url, { ...filters, dry_run: false });
        say("bulk-message", bulkDone(kind, done), "ok");
        refresh();
      } catch (err) { say("bulk-message", err.message, "bad"); }
    }, spec.cls);
    go.id = "bulk-confirm";
    const never = button("Never mind", () => say("bulk-message", ""));
    say("bulk-message", `${dry.matched} job(s) match (${describe(filters, spec.status)}). `, "", [go, never]);
  } catch (err) { say("bulk-message", err.message, "bad"); }
}

document.addEventListener("change", (event) => {
  const box = event.target;
  if (!(box instanceof HTMLInputElement)) return;
  if (box.id === "pick-all") {
    for (const row of document.querySelectorAll("#rows input.pick")) {
      if (box.checked) selected.add(row.value); else selected.delete(row.value);
    }
  } else if (box.classList.contains("pick")) {
    if (box.checked) selected.add(box.value); else selected.delete(box.value);
  } else {
    return;
  }
  restoreSelection();
});

// ---- actions ------------------------------------------------------------------------------
document.addEventListener("click", async (event) => {
  const target = event.target instanceof Element ? event.target.closest("[data-action]") : null;
  if (!target) return;
  const action = target.dataset.action;
  const jobId = target.dataset.id || document.body.dataset.job;
  try {
    if (action === "replay") {
      target.disabled = true;
      await call("POST", `/jobs/${encodeURIComponent(jobId)}/replay`, {});
      say("bulk-message", `Replaying ${jobId.slice(0, 12)}…`, "ok");
      refresh();
    } else if (action === "replay-selected") {
      const ids = [...selected];
      const done = await call("POST", "/jobs:replay", { ids });
      selected.clear();
      restoreSelection();
      say("bulk-message", `Replaying ${done.matched} selected job(s) at ${done.rate}/s.`, "ok");
      refresh();
    } else if (action === "replay-matching") {
      await bulk("replay");
    } else if (action === "purge-matching") {
      await bulk("purge");
    } else if (action === "cancel-matching") {
      await bulk("cancel");
    } else if (action === "cancel" || action === "cancel-job") {
      target.disabled = true;
      const done = await call("POST", `/jobs/${encodeURIComponent(jobId)}/cancel`, {});
      const text = done.outcome === "cancelling" ? "Cancelling: it stops after the step it runs now." : `Cancelled ${jobId.slice(0, 12)}.`;
      say(action === "cancel" ? "bulk-message" : "job-message", text, "ok");
      refresh();
    } else if (action === "pause" || action === "resume") {
      target.disabled = true;
      const name = target.dataset.connection;
      const done = await call("POST", `/connections/${encodeURIComponent(name)}/${action}`, {});
      say("bulk-message", action === "pause" ? `${name} paused: its jobs wait.` : `${name} resumed; ${done.republished} waiting step(s) sent on.`, "ok");
      refresh();
    } else if (action === "replay-job" || action === "restart-job") {
      target.disabled = true;
      const restart = action === "restart-job";
      await call("POST", `/jobs/${encodeURIComponent(jobId)}/replay`,
        { restart, force: restart && target.dataset.force === "true" });
      say("job-message", restart ? "Restarted from the first step." : "Replaying from the failed step.", "ok");
      refresh();
    } else if (action === "notify-job") {
      target.disabled = true;
      await call("POST", `/jobs/${encodeURIComponent(jobId)}/notify`);
      say("job-message", "Webhook redelivery queued.", "ok");
      refresh();
    } else if (action === "delete-job") {
      const really = button("Yes, delete this job", async () => {
        try {
          await call("DELETE", `/jobs/${encodeURIComponent(jobId)}`);
          window.location.href = "/";
        } catch (err) { say("job-message", err.message, "bad"); }
      }, "danger");
      really.id = "delete-confirm";
      say("job-message", "Delete this job and its history? ", "", [really, button("Cancel", () => say("job-message", ""))]);
    }
  } catch (err) {
    target.disabled = false;
    say(page === "job" ? "job-message" : "bulk-message", err.message, "bad");
  }
});

restoreSelection();
