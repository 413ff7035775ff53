// strongroom Control Room: the live parts of the pages, by polling the read-only API.
// Values from the vault are only ever set as textContent (never as HTML).
"use strict";
(function () {
  const POLL_MS = 2000;
  const ROOT = (document.body && document.body.dataset.root) || "";
  const TERMINAL = new Set(["completed", "failed", "cancelled"]);

  function setBadge(cell, status) {
    if (!cell) return;
    let badge = cell.querySelector("[data-status]");
    if (!badge) {
      badge = document.createElement("span");
      badge.setAttribute("data-status", "");
      cell.textContent = "";
      cell.appendChild(badge);
    }
    badge.className = "badge s-" + status;
    badge.textContent = status;
  }

  function progressText(run) {
    const p = run.progress || {};
    let text = String(p.steps_completed || 0);
    if (p.steps_total) text += "/" + p.steps_total;
    return text;
  }

  async function getJSON(url) {
    const response = await fetch(url, { headers: { accept: "application/json" }, credentials: "same-origin" });
    if (!response.ok) throw new Error(url + ": " + response.status);
    return response.json();
  }

  // The run index: rows of runs still moving are refreshed one by one.
  function liveIndex(table) {
    async function tick() {
      const rows = Array.from(table.querySelectorAll("tr[data-run-id]"));
      for (const row of rows) {
        const cell = row.querySelector('[data-cell="status"]');
        const current = cell && cell.textContent.trim();
        if (TERMINAL.has(current)) continue;
        try {
          const run = await getJSON(ROOT + "/api/v1/runs/" + encodeURIComponent(row.dataset.runId));
          setBadge(cell, run.status);
          const progress = row.querySelector('[data-cell="progress"]');
          if (progress) progress.textContent = progressText(run);
        } catch (e) { /* the next tick tries again */ }
      }
      setTimeout(tick, POLL_MS);
    }
    setTimeout(tick, POLL_MS);
  }

  // One run: its status follows the run record at every tick; when the record's version
  // changes, the header, steps, workers, snapshots and artifacts are redrawn from a fresh
  // copy of the page (one request).
  function liveRun(box) {
    const runId = box.dataset.liveRun;
    let version = box.dataset.version;
    async function tick() {
      try {
        const run = await getJSON(ROOT + "/api/v1/runs/" + encodeURIComponent(runId));
        const header = document.getElementById("run-header") || box;
        setBadge(header.querySelector('h1 [data-cell="status"]'), run.status);
        const progress = header.querySelector('[data-cell="progress"]');
        if (progress) progress.textContent = progressText(run);
        if (String(run.version) !== String(version)) {
          version = run.version;
          await refreshSections(["run-header", "steps", "workers", "snapshots", "artifacts"]);
        }
        if (TERMINAL.has(run.status)) return;
      } catch (e) { /* try again */ }
      setTimeout(tick, POLL_MS);
    }
    setTimeout(tick, POLL_MS);
  }

  // Replace sections with the same sections of a fresh copy of this page (server-rendered,
  // escaped there; parsed as an inert document, so nothing in it runs). A section the page
  // did not have yet (workers, once a step is claimed) goes after the one before it in ids.
  async function refreshSections(ids) {
    const response = await fetch(location.pathname + location.search, { credentials: "same-origin" });
    if (!response.ok) return;
    const doc = new DOMParser().parseFromString(await response.text(), "text/html");
    let previous = null;
    for (const id of ids) {
      const fresh = doc.getElementById(id);
      const old = document.getElementById(id);
      if (fresh && old) old.replaceWith(document.importNode(fresh, true));
      else if (fresh && previous) previous.after(document.importNode(fresh, true));
      previous = document.getElementById(id) || previous;
    }
  }

  // The log: new lines after the last one shown, appended while "live tail" is on.
  function liveLog(table) {
    const runId = table.dataset.logTail;
    let after = Number(table.dataset.after || 0);
    const toggle = document.getElementById("live-tail");
    const body = table.querySelector("tbody");
    async function tick() {
      if (!toggle || toggle.checked) {
        const params = new URLSearchParams({ after_seq: String(after), limit: "200" });
        if (table.dataset.level) params.set("level", table.dataset.level);
        if (table.dataset.event) params.set("event", table.dataset.event);
        try {
          const entries = await getJSON(ROOT + "/api/v1/runs/" + encodeURIComponent(runId) + "/logs?" + params);
          for (const e of entries) {
            const row = document.createElement("tr");
            row.className = "l-" + e.level;
            const cells = [String(e.seq), String(e.timestamp).replace("T", " ").slice(0, 19), e.level, e.event, e.phase || "", e.message || ""];
            cells.forEach(function (text, i) {
              const td = document.createElement("td");
              td.textContent = text;
              if (i === 1) td.className = "mono";
              if (i === 5) td.className = "message";
              row.appendChild(td);
            });
            body.appendChild(row);
            after = Math.max(after, e.seq);
          }
          table.dataset.after = String(after);
        } catch (e) { /* try again */ }
      }
      setTimeout(tick, POLL_MS);
    }
    setTimeout(tick, POLL_MS);
  }

  // The run index's totals: per status (the buttons) and overall, fetched once after the
  // page is shown, for the same filters.
  async function fillCounts(list) {
    try {
      const answer = await getJSON(list.dataset.countsUrl);
      const plus = answer.exact ? "" : "+";
      const counts = answer.counts || {};
      list.querySelectorAll("[data-count]").forEach(function (link) {
        const n = counts[link.dataset.count] || 0;
        link.querySelector("b").textContent = n.toLocaleString("en-US") + plus;
      });
      const chosen = (list.dataset.statuses || "").split(",").filter(Boolean);
      const total = chosen.length
        ? chosen.reduce(function (sum, s) { return sum + (counts[s] || 0); }, 0)
        : answer.total;
      const shown = document.querySelector("[data-total]");
      if (shown) shown.textContent = Math.min(total, 10000).toLocaleString("en-US") + plus;
    } catch (e) { /* the buttons keep their placeholder */ }
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-counts-url]").forEach(fillCounts);
    document.querySelectorAll("[data-live-runs]").forEach(liveIndex);
    document.querySelectorAll("[data-live-run]").forEach(liveRun);
    document.querySelectorAll("[data-log-tail]").forEach(liveLog);
  });
})();
