// Filters and the cell dialog. Data never goes through innerHTML: the details of each cell are
// an inert <template> that is cloned, so escaped text stays text.
(function () {
  "use strict";
  const $ = (sel) => document.querySelector(sel);
  const $$ = (sel, root) => Array.from((root || document).querySelectorAll(sel));
  const f = { model: $("#f-model"), strategy: $("#f-strategy"), status: $("#f-status"), release: $("#f-release") };
  if (!f.model) return;

  function statusMatches(td, wanted) {
    if (!wanted) return true;
    if (!td.dataset.status) return false;
    if (wanted === "not-pass") return td.dataset.status !== "pass";
    if (wanted === "regression") return td.dataset.regression === "true";
    return td.dataset.status === wanted;
  }

  function apply() {
    const release = f.release.value, wanted = f.status.value;
    $$("[data-col]").forEach((el) => el.classList.toggle("off", !!release && el.dataset.col !== release));
    let shown = 0, total = 0;
    $$("#grid tbody.group").forEach((group) => {
      let groupShown = 0;
      $$("tr.row", group).forEach((row) => {
        total += 1;
        const cells = $$("td.cell", row).filter((td) => !td.classList.contains("off"));
        let any = false;
        cells.forEach((td) => { const ok = statusMatches(td, wanted); td.classList.toggle("dim", !!wanted && !ok); any = any || ok; });
        const visible = (!f.model.value || row.dataset.model === f.model.value)
          && (!f.strategy.value || row.dataset.strategy === f.strategy.value) && any;
        row.classList.toggle("off", !visible);
        if (visible) { shown += 1; groupShown += 1; }
      });
      group.classList.toggle("off", groupShown === 0);
    });
    $("#shown").textContent = shown + " of " + total + " rows";
  }

  Object.values(f).forEach((sel) => sel.addEventListener("change", apply));
  $("#f-reset").addEventListener("click", () => { Object.values(f).forEach((sel) => { sel.value = ""; }); apply(); });

  const dialog = $("#cell-dialog"), body = $("#dialog-body");
  document.addEventListener("click", (event) => {
    const button = event.target.closest("button.open");
    if (!button) return;
    const template = document.getElementById(button.dataset.detail);
    body.replaceChildren(template.content.cloneNode(true));
    dialog.showModal();
  });
  dialog.addEventListener("click", (event) => { if (event.target === dialog) dialog.close(); });
  apply();
})();
