// Loading a model's cells when it is opened, filters, folding, deep links and the cell dialog.
// A model's cells come from cells/MODEL.js, added as a script element (it works from disk and from a server);
// every element is built with textContent, never innerHTML, so text from messages stays text.
(function () {
  "use strict";
  const $ = (sel) => document.querySelector(sel);
  const $$ = (sel, root) => Array.from((root || document).querySelectorAll(sel));
  const f = {
    model: $("#f-model"), strategy: $("#f-strategy"), status: $("#f-status"), release: $("#f-release"),
    text: $("#f-text"), cause: $("#f-cause"),
  };
  if (!f.model) return;
  const SYMBOL = { pass: "✓", skipped: "↷", unsupported: "∅", fail: "✗", error: "‼" };
  const releases = $$("#grid thead th[data-col]").map((th) => th.dataset.col);
  const group = (model) => $$("#grid tbody.group").find((g) => g.dataset.model === model);

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([key, value]) => {
      if (value === undefined || value === null || value === false) return;
      if (key === "dataset") Object.assign(node.dataset, value);
      else node.setAttribute(key, value === true ? "" : String(value));
    });
    children.flat(Infinity).forEach((child) => {
      if (child !== undefined && child !== null && child !== "") node.append(child);
    });
    return node;
  }

  // --- a model's cells, loaded once --------------------------------------------------------------
  const waiting = new Map(), loads = new Map(), cells = new Map();
  window.compatMatrixCells = (data) => {
    const resolve = waiting.get(data.model);
    if (resolve) resolve(data);
  };

  function load(model) {
    if (!loads.has(model)) {
      const g = group(model);
      const status = g && g.querySelector(".loading");
      loads.set(model, new Promise((resolve, reject) => {
        if (!g) { reject(new Error("no model " + model)); return; }
        waiting.set(model, resolve);
        if (status) status.textContent = "loading…";
        const script = el("script", { src: g.dataset.src });
        script.onerror = () => reject(new Error(g.dataset.src + " could not be read: keep the cells folder beside index.html"));
        document.head.append(script);
      }).then((data) => {
        draw(data);
        if (status) status.textContent = "";
        return data;
      }, (error) => {
        if (status) status.textContent = error.message;
        return null;
      }));
    }
    return loads.get(model);
  }

  function cellTd(cell, release, title) {
    if (!cell) return el("td", { class: "cell empty", dataset: { col: release, status: "" } }, "·");
    const id = "c" + cells.size;
    cells.set(id, { cell, title });
    const classes = ["cell", "s-" + cell.worst, cell.expected && "exp", cell.regression && "reg"].filter(Boolean).join(" ");
    const button = el("button", { type: "button", class: "open", title, dataset: { detail: id } },
      SYMBOL[cell.worst] + " " + cell.worst + (cell.expected ? "*" : ""),
      cell.regression ? [" ", el("span", { class: "mark" }, "REG")] : null,
      cell.fix ? [" ", el("span", { class: "mark fix" }, "FIX")] : null);
    return el("td", { class: classes, dataset: { col: release, status: cell.worst, regression: String(!!cell.regression),
      causes: (cell.causes || []).join(" "), detail: id } }, button);
  }

  function draw(data) {
    const g = group(data.model);
    data.rows.forEach((row) => {
      const key = data.model + "/" + row.strategy + "/" + row.profile;
      const title = (release) => data.model + " · " + row.strategy + " · " + row.profile + " — transformers " + release;
      g.append(el("tr", { class: "row", id: key, dataset: { model: data.model, strategy: row.strategy, profile: row.profile } },
        el("td", { class: "strategy" }, el("a", { class: "anchor", href: "#" + key, title: "link to this row" }, row.strategy),
          row.profile !== "default" ? [" ", el("small", {}, "· " + row.profile)] : null),
        releases.map((release) => cellTd(row.cells[release], release, title(release)))));
    });
    const slot = $$(".cross-slot").find((s) => s.dataset.model === data.model);
    if (slot && data.cross) {
      const byPair = new Map(data.cross.cells.map(([saved, loaded, cell]) => [saved + "|" + loaded, cell]));
      slot.replaceChildren(el("table", { class: "crossgrid" },
        el("thead", {}, el("tr", {}, el("th", {}, "saved by ↓ / loaded by →"),
          data.cross.loaded_by.map((v) => el("th", { dataset: { col: v } }, v)))),
        el("tbody", {}, data.cross.saved_by.map((saved) => el("tr", {}, el("th", {}, saved),
          data.cross.loaded_by.map((loaded) => cellTd(byPair.get(saved + "|" + loaded), loaded,
            data.model + " saved by " + saved + " — loaded by transformers " + loaded)))))));
    }
  }

  function detail({ cell, title }) {
    const link = (url) => /^https?:\/\//.test(url || "") ? [" ", el("a", { href: url, rel: "noreferrer" }, "link")] : null;
    const rows = cell.probes.flatMap((p) => [
      el("tr", { class: "probe s-" + p.status },
        el("td", {}, p.probe, p.saved_by ? [" ", el("small", {}, "(saved by " + p.saved_by + ")")] : null),
        el("td", {}, SYMBOL[p.status] + " " + p.status), el("td", {}, p.error_type || ""), el("td", {}, p.loaded_class || ""),
        el("td", {}, p.load_path || ""), el("td", {}, p.dtype || ""), el("td", {}, (p.duration_s || 0).toFixed(2) + " s"),
        el("td", {}, p.peak_memory_mb === undefined ? "" : p.peak_memory_mb + " MB"),
        el("td", {}, p.expected ? [p.expected.status + ": " + p.expected.reason, link(p.expected.link)] : null,
          (p.causes || []).map((id) => [" ", el("a", { class: "to-cause", href: "#cause-" + id }, "cause")]))),
      p.message ? el("tr", { class: "msgrow" }, el("td", { colspan: 9 }, el("pre", { class: "msg" }, p.message))) : null,
      p.details ? el("tr", { class: "msgrow" }, el("td", { colspan: 9 }, el("details", {}, el("summary", {}, "details"),
        el("pre", {}, JSON.stringify(p.details, null, 1))))) : null,
    ].filter(Boolean));
    const head = ["probe", "status", "error type", "loaded class", "load path", "dtype", "time", "peak memory", "expectation"];
    return [el("h3", {}, title), el("table", { class: "probes" }, el("thead", {}, el("tr", {}, head.map((h) => el("th", {}, h)))),
      el("tbody", {}, rows)), el("p", { class: "meta" }, cell.environment)];
  }

  // --- filters -----------------------------------------------------------------------------------
  const texts = new Map();
  function cellText(td) {
    if (!texts.has(td)) {
      const entry = cells.get(td.dataset.detail);
      texts.set(td, entry ? JSON.stringify(entry.cell.probes).toLowerCase() : "");
    }
    return texts.get(td);
  }

  function cellMatches(td, wanted, text, cause) {
    if (!td.dataset.status) return !wanted && !text && !cause;
    if (cause && !td.dataset.causes.split(" ").includes(cause)) return false;
    if (text && !cellText(td).includes(text)) return false;
    if (!wanted) return true;
    if (wanted === "not-pass") return td.dataset.status !== "pass";
    if (wanted === "regression") return td.dataset.regression === "true";
    return td.dataset.status === wanted;
  }

  function narrowing() {
    return !!(f.status.value || f.text.value.trim() || f.cause.value);
  }

  // The models a filter needs: one, when it names one; all, when it looks inside cells.
  function needed() {
    if (f.model.value) return [f.model.value];
    if (narrowing() || f.strategy.value) return $$("#grid tbody.group").map((g) => g.dataset.model);
    return [];
  }

  let applying = 0;
  async function apply() {
    const mine = ++applying;
    await Promise.all(needed().map(load));
    if (mine !== applying) return;  // a later change of the filters draws instead
    const release = f.release.value, wanted = f.status.value, cause = f.cause.value;
    const text = f.text.value.trim().toLowerCase();
    const narrow = narrowing();
    $$("[data-col]").forEach((node) => node.classList.toggle("off", !!release && node.dataset.col !== release));
    let shown = 0, total = 0;
    $$("#grid tbody.group").forEach((g) => {
      const rows = $$("tr.row", g);
      const modelOk = !f.model.value || g.dataset.model === f.model.value;
      let groupShown = 0;
      if (!rows.length) {  // not loaded: no filter looked inside it
        total += Number(g.dataset.rows);
        if (modelOk && !narrow && !f.strategy.value) groupShown = Number(g.dataset.rows);
      }
      rows.forEach((row) => {
        total += 1;
        let any = false;
        $$("td.cell", row).filter((td) => !td.classList.contains("off")).forEach((td) => {
          const ok = cellMatches(td, wanted, text, cause);
          td.classList.toggle("dim", narrow && !ok);
          any = any || ok;
        });
        const visible = modelOk && (!f.strategy.value || row.dataset.strategy === f.strategy.value) && (any || !narrow);
        row.classList.toggle("off", !visible);
        if (visible) groupShown += 1;
      });
      shown += groupShown;
      g.classList.toggle("off", groupShown === 0);
      if ((narrow || f.model.value || f.strategy.value) && groupShown && rows.length) fold(g, false);
    });
    $("#shown").textContent = shown + " of " + total + " rows";
  }

  function fold(g, folded) {
    g.classList.toggle("folded", folded);
    const button = g.querySelector("button.fold");
    button.setAttribute("aria-expanded", String(!folded));
    button.textContent = folded ? "▸" : "▾";
  }

  async function unfold(g) {
    await load(g.dataset.model);
    fold(g, false);
    apply();
  }

  Object.values(f).forEach((node) => node.addEventListener(node.tagName === "INPUT" ? "input" : "change", apply));
  $("#f-reset").addEventListener("click", () => { Object.values(f).forEach((node) => { node.value = ""; }); apply(); });
  $("#f-open").addEventListener("click", () => Promise.all($$("#grid tbody.group").map(unfold)));

  document.addEventListener("click", (event) => {
    const toggle = event.target.closest("button.fold");
    if (toggle) {
      const g = toggle.closest("tbody.group");
      if (g.classList.contains("folded")) unfold(g);
      else fold(g, true);
      return;
    }
    const cross = event.target.closest("button.load-cross");
    if (cross) {
      load(cross.dataset.model);
      return;
    }
    const show = event.target.closest("button.show-cells");
    if (show) {  // a cause's cells in the grid, everything else dimmed or hidden
      f.cause.value = show.dataset.cause;
      apply().then(() => $("#grid-section").scrollIntoView());
    }
  });

  // --- the cell dialog ---------------------------------------------------------------------------
  const dialog = $("#cell-dialog"), body = $("#dialog-body");
  function openCell(button) {
    body.replaceChildren(...detail(cells.get(button.dataset.detail)));
    dialog.showModal();
  }
  document.addEventListener("click", (event) => {
    const button = event.target.closest("button.open");
    if (button) openCell(button);
  });
  dialog.addEventListener("click", (event) => {
    if (event.target === dialog) dialog.close();
    if (event.target.closest("a[href^='#']")) dialog.close();  // a link to a cause leaves the dialog
  });

  // --- deep links: #model, #model/strategy/profile[/release] (that cell opens), #model/cross, #cause-<id>
  async function follow() {
    const hash = decodeURIComponent(location.hash.slice(1));
    if (!hash) return;
    $$(".target").forEach((node) => node.classList.remove("target"));
    const parts = hash.split("/");
    const g = group(parts[0]);
    if (g) {
      await load(parts[0]);
      if (parts[1] !== "cross") fold(g, false);
    }
    let target = document.getElementById(hash);
    const release = parts.length === 4 ? parts[3] : null;
    if (!target && release) target = document.getElementById(parts.slice(0, 3).join("/"));
    if (!target) return;
    const details = target.closest("details");
    if (details) details.open = true;
    if (target.tagName === "TR" || target.tagName === "LI") target.classList.add("target");
    target.scrollIntoView({ block: "center" });
    if (release) {
      const button = target.querySelector(`td[data-col="${CSS.escape(release)}"] button.open`);
      if (button) openCell(button);
    }
  }
  window.addEventListener("hashchange", follow);
  apply();
  follow();
})();
