// Ferry dashboard: poll the server-rendered fragments every 2 s, and send the replay/purge
// actions with the session's CSRF token. No framework, no build.
"use strict";

const POLL_MS = 2000;
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
    restoreSelection();
    if (live) { live.classList.remove("stale"); live.textContent = "live"; }
  } catch (err) {
    if (live) { live.classList.add("stale"); live.textContent = "reconnecting"; }
  } finally {
    busy = false;
  }
}
setInterval(refresh, POLL_MS);
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
