// image-gen studio: a few lines of plain JS over the JSON API (no build step).
"use strict";
const csrf = () => document.querySelector('meta[name="csrf-token"]').content;
function toast(msg, err) {
  const t = document.getElementById("toast");
  t.textContent = msg; t.className = "show" + (err ? " err" : "");
  clearTimeout(t._h); t._h = setTimeout(() => { t.className = ""; }, 6000);
}
async function post(url, body) {
  const r = await fetch(url, {method: "POST", credentials: "same-origin",
    headers: {"Content-Type": "application/json", "X-CSRF-Token": csrf(), "Accept": "application/json"},
    body: JSON.stringify(body || {})});
  const data = await r.json().catch(() => ({}));
  if (r.status === 403 && !document.querySelector(".who b")) {
    location.href = "/login?next=" + encodeURIComponent(location.pathname + location.search); throw new Error("sign in");
  }
  if (!r.ok) { toast(data.error || ("error " + r.status), true); throw new Error(data.error || r.status); }
  return data;
}
function formObject(form) {
  const o = {};
  new FormData(form).forEach((v, k) => { if (typeof v === "string" && v.trim() !== "") o[k] = v.trim(); });
  return o;
}
// live progress: poll the run's status while it runs; reload when something changed
function watchRun(runId, initial) {
  let last = JSON.stringify(initial);
  const tick = async () => {
    const r = await fetch(`/api/runs/${runId}/status`, {headers: {"Accept": "application/json"}});
    if (!r.ok) return;
    const s = await r.json();
    const now = JSON.stringify([s.status, s.stages.map(x => [x.status, x.artifact_sha256])]);
    if (now !== last) { location.reload(); return; }
    if (s.status === "running") setTimeout(tick, 700);
  };
  setTimeout(tick, 700);
}
document.addEventListener("DOMContentLoaded", () => {
  const run = document.getElementById("run");
  if (run) {
    const id = run.dataset.run;
    // the state this page shows, as rendered: any change since (even before this script ran) reloads it
    if (run.dataset.status === "running") watchRun(id, JSON.parse(run.dataset.snapshot));
    const note = () => (document.getElementById("note") || {}).value || "";
    const decide = (what) => async (ev) => {
      ev.target.disabled = true;
      try {
        await post(`/api/runs/${id}/${what}`, {note: note()});
        toast(what === "approve" ? "Approved: the run continues" : "Rejected");
        location.reload();
      } catch (e) { ev.target.disabled = false; }
    };
    const a = document.getElementById("approve"), rj = document.getElementById("reject");
    if (a) a.addEventListener("click", decide("approve"));
    if (rj) rj.addEventListener("click", decide("reject"));
    const form = document.getElementById("rerun-form");
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const body = formObject(form);
      if (body.prompt === run.querySelector(".prompt-full").textContent.trim()) delete body.prompt;
      const btn = form.querySelector("button[type=submit]"); btn.disabled = true;
      try { const d = await post(`/api/runs/${id}/rerun`, body); location.href = `/runs/${d.run_id}`; }
      catch (e) { btn.disabled = false; }
    });
    document.querySelectorAll(".rerun-from").forEach(b => b.addEventListener("click", () => {
      const t = document.getElementById("tweak"); t.open = true;
      form.stage.value = b.dataset.stage; form.seed.value = b.dataset.seed;
      form.strength.value = b.dataset.strength; form.steps.value = b.dataset.steps;
      t.scrollIntoView({behavior: "smooth"});
    }));
  }
  // full-size viewer with 1:1 zoom for typography
  const dlg = document.getElementById("viewer");
  if (dlg) {
    const vp = dlg.querySelector(".viewport"), img = vp.querySelector("img");
    const zoom = (z) => {
      if (z === "fit") { vp.className = "viewport fit"; img.style.width = ""; }
      else { vp.className = "viewport px"; img.style.width = (img.naturalWidth * Number(z)) + "px"; }
    };
    document.querySelectorAll(".imgbtn").forEach(b => b.addEventListener("click", () => {
      img.src = b.dataset.full; dlg.querySelector("#viewer-open").href = b.dataset.full;
      zoom("fit"); dlg.showModal();
    }));
    dlg.querySelectorAll("[data-zoom]").forEach(b => b.addEventListener("click", () => zoom(b.dataset.zoom)));
    dlg.querySelector("[data-close]").addEventListener("click", () => dlg.close());
    img.addEventListener("click", () => zoom(vp.classList.contains("fit") ? "1" : "fit"));
  }
  // gallery selection: compare, batch re-run
  const picks = () => [...document.querySelectorAll(".select-run:checked")].map(c => c.value);
  const cmp = document.getElementById("compare-selected"), rr = document.getElementById("rerun-selected");
  if (cmp) {
    const update = () => { const n = picks().length; cmp.disabled = n < 2; rr.disabled = n < 1; };
    document.querySelectorAll(".select-run").forEach(c => c.addEventListener("change", update));
    cmp.addEventListener("click", () => { location.href = "/compare?ids=" + picks().join(","); });
    rr.addEventListener("click", async () => {
      const d = await post("/api/reruns", {run_ids: picks(), seed: "new"});
      toast(`started ${d.runs.length} re-run(s)`); setTimeout(() => location.href = "/", 800);
    });
  }
  // compare: synchronised zoom and scroll
  const z = document.getElementById("zoom");
  if (z) {
    const views = [...document.querySelectorAll(".compare .sync")];
    const apply = () => {
      const f = Number(z.value);
      document.getElementById("zoom-label").textContent = f === 1 ? "fit" : (f + "× of natural size");
      views.forEach(v => { const im = v.querySelector("img"); if (!im) return;
        if (f === 1) { v.classList.add("fit"); im.style.width = ""; }
        else { v.classList.remove("fit"); im.style.width = (im.naturalWidth * f) + "px"; } });
    };
    z.addEventListener("input", apply); apply();
    let syncing = false;
    views.forEach(v => v.addEventListener("scroll", () => {
      if (syncing) return; syncing = true;
      views.forEach(o => { if (o !== v) { o.scrollLeft = v.scrollLeft; o.scrollTop = v.scrollTop; } });
      requestAnimationFrame(() => { syncing = false; });
    }));
    const only = document.getElementById("only-diff"), table = document.querySelector(".diff-table");
    if (only && table) { const t = () => table.classList.toggle("only-diff", only.checked); only.addEventListener("change", t); t(); }
  }
  // briefs: start a batch (multipart: pasted text and/or a file)
  const bf = document.getElementById("batch-form");
  if (bf) bf.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const fd = new FormData(bf); fd.append("csrf", csrf());
    const r = await fetch("/api/batches", {method: "POST", body: fd, credentials: "same-origin",
      headers: {"X-CSRF-Token": csrf(), "Accept": "application/json"}});
    const d = await r.json().catch(() => ({}));
    if (r.status === 403) { location.href = "/login?next=/briefs"; return; }
    if (!r.ok) { toast(d.error || ("error " + r.status), true); return; }
    location.href = d.url;
  });
  const batch = document.getElementById("batch");
  if (batch && batch.dataset.finished !== "1") setTimeout(() => location.reload(), 1000);
  const rf = document.getElementById("report-form");
  if (rf) rf.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    await post("/api/report", formObject(rf)); location.reload();
  });
  if (document.querySelector('[data-testid="report-running"]')) setTimeout(() => location.reload(), 1000);
});
