// Filters, folding, deep links and the cell dialog. Data never goes through innerHTML: the details
// of each cell are an inert <template> that is cloned, so escaped text stays text.
(function () {
  "use strict";
  const $ = (sel) => document.querySelector(sel);
  const $$ = (sel, root) => Array.from((root || document).querySelectorAll(sel));
  const f = {
    model: $("#f-model"), strategy: $("#f-strategy"), status: $("#f-status"), release: $("#f-release"),
    text: $("#f-text"), cause: $("#f-cause"),
  };
  if (!f.model) return;

  // The messages of a cell, read once from its template (lower case, for the text filter).
  const texts = new Map();
  function cellText(td) {
    if (!texts.has(td)) {
      const button = td.querySelector("button.open");
      const template = button && document.getElementById(button.dataset.detail);
      texts.set(td, template ? template.content.textContent.toLowerCase() : "");
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

  function apply() {
    const release = f.release.value, wanted = f.status.value, cause = f.cause.value;
    const text = f.text.value.trim().toLowerCase();
    const narrowing = !!(wanted || text || cause);
    $$("[data-col]").forEach((el) => el.classList.toggle("off", !!release && el.dataset.col !== release));
    let shown = 0, total = 0;
    $$("#grid tbody.group").forEach((group) => {
      let groupShown = 0;
      $$("tr.row", group).forEach((row) => {
        total += 1;
        const cells = $$("td.cell", row).filter((td) => !td.classList.contains("off"));
        let any = false;
        cells.forEach((td) => {
          const ok = cellMatches(td, wanted, text, cause);
          td.classList.toggle("dim", narrowing && !ok);
          any = any || ok;
        });
        const visible = (!f.model.value || row.dataset.model === f.model.value)
          && (!f.strategy.value || row.dataset.strategy === f.strategy.value) && (any || !narrowing);
        row.classList.toggle("off", !visible);
        if (visible) { shown += 1; groupShown += 1; }
      });
      group.classList.toggle("off", groupShown === 0);
      if (narrowing && groupShown) fold(group, false);  // what a filter finds is shown, never folded away
    });
    $("#shown").textContent = shown + " of " + total + " rows";
  }

  function fold(group, folded) {
    group.classList.toggle("folded", folded);
    const button = group.querySelector("button.fold");
    button.setAttribute("aria-expanded", String(!folded));
    button.textContent = folded ? "▸" : "▾";
  }

  Object.values(f).forEach((el) => el.addEventListener(el.tagName === "INPUT" ? "input" : "change", apply));
  $("#f-reset").addEventListener("click", () => { Object.values(f).forEach((el) => { el.value = ""; }); apply(); });

  document.addEventListener("click", (event) => {
    const toggle = event.target.closest("button.fold");
    if (toggle) {
      const group = toggle.closest("tbody.group");
      fold(group, !group.classList.contains("folded"));
      return;
    }
    const show = event.target.closest("button.show-cells");
    if (show) {  // a cause's cells in the grid, everything else dimmed or hidden
      f.cause.value = show.dataset.cause;
      apply();
      $("#grid-section").scrollIntoView();
    }
  });

  const dialog = $("#cell-dialog"), body = $("#dialog-body");
  function openCell(button) {
    const template = document.getElementById(button.dataset.detail);
    body.replaceChildren(template.content.cloneNode(true));
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

  // Deep links: #model, #model/strategy/profile (optionally /release to open that cell), #cause-<id>.
  function follow() {
    const hash = decodeURIComponent(location.hash.slice(1));
    if (!hash) return;
    $$(".target").forEach((el) => el.classList.remove("target"));
    const parts = hash.split("/");
    let target = document.getElementById(hash);
    const release = parts.length === 4 ? parts[3] : null;
    if (!target && release) target = document.getElementById(parts.slice(0, 3).join("/"));
    if (!target) return;
    const group = target.closest("tbody.group");
    if (group) fold(group, false);
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
