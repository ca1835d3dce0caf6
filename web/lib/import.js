// Importing products from a CSV file (Products screen, managers and owners): pick a file,
// check it (a dry run: row-level errors and what would be created or updated), then import it
// all at once — nothing is imported if any row is wrong. Uploads show their progress.

import { ApiError, csrf, humanError } from "./api.js";
import { h, icon, openDialog, alertBox, table } from "./dom.js";

/// POSTs `file` as text/csv to the import route; `onProgress(fraction)` while uploading.
/// Resolves with {status, body}.
function upload(file, dryRun, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", `/api/v1/products/import?dry_run=${dryRun}`);
    xhr.setRequestHeader("Content-Type", "text/csv; charset=utf-8");
    xhr.setRequestHeader("Accept", "application/json");
    const token = csrf();
    if (token) xhr.setRequestHeader("X-CSRF-Token", token);
    xhr.upload.addEventListener("progress", (e) => {
      if (e.lengthComputable) onProgress(e.loaded / e.total);
    });
    xhr.addEventListener("load", () => {
      let body = null;
      try {
        body = JSON.parse(xhr.responseText);
      } catch {
        body = null;
      }
      resolve({ status: xhr.status, body });
    });
    xhr.addEventListener("error", () =>
      reject(new ApiError({ message: "The node did not answer the upload. Try again." })),
    );
    xhr.send(file);
  });
}

function summary(report) {
  const verb = report.imported ? "" : "would be ";
  return `${report.rows} rows: ${report.created} ${verb}created, ${report.updated} ${verb}updated, ${report.unchanged} unchanged.`;
}

/// Opens the import dialog; `done()` runs after a successful import.
export function importProductsDialog(done) {
  const file = h("input", { type: "file", id: "import-file", accept: ".csv,text/csv", required: true });
  const progress = h("progress", { class: "progress", id: "import-progress", max: 1, value: 0, hidden: true });
  const phase = h("p", { class: "muted", id: "import-phase" });
  const result = h("div", { id: "import-result" });
  const check = h("button", { type: "button", class: "btn", id: "import-check" }, "Check file");
  const run = h("button", { type: "button", class: "btn btn-primary", id: "import-run", disabled: true }, "Import");
  const body = h(
    "div",
    null,
    h(
      "p",
      null,
      "A CSV file with a header row: ",
      h("code", null, "sku,name,price,barcode,category,unit,cost,tax_rate,reorder_level"),
      ". Prices in the shop's currency like 2.50, tax rate in percent. An existing SKU updates its product; a new SKU creates one. The Products export has these columns.",
    ),
    h("label", { for: "import-file" }, "File"),
    file,
    progress,
    phase,
    result,
  );
  const { close } = openDialog({ title: "Import products", body, actions: [check, run], wide: true });
  file.addEventListener("change", () => {
    run.disabled = true;
    result.replaceChildren();
  });

  async function send(dryRun) {
    const f = file.files[0];
    if (!f) {
      result.replaceChildren(alertBox("error", "Choose a CSV file first."));
      return null;
    }
    check.disabled = run.disabled = true;
    progress.hidden = false;
    progress.value = 0;
    phase.textContent = "Uploading…";
    try {
      const res = await upload(f, dryRun, (x) => {
        progress.value = x;
        if (x >= 1) phase.textContent = dryRun ? "Checking every row…" : "Importing…";
      });
      progress.value = 1;
      phase.textContent = "";
      return res;
    } catch (err) {
      result.replaceChildren(alertBox("error", humanError(err)));
      return null;
    } finally {
      check.disabled = false;
    }
  }

  function showReport(report, extra) {
    const errors = report.errors || [];
    const parts = [
      errors.length
        ? alertBox(
            "error",
            `${errors.length} problem${errors.length === 1 ? "" : "s"} in the file — nothing ${report.dry_run ? "would be" : "was"} imported. Fix them and check again.`,
          )
        : alertBox(report.imported ? "ok" : "info", summary(report)),
      extra || null,
      errors.length
        ? h(
            "div",
            { class: "table-wrap import-errors" },
            table(
              { id: "import-errors" },
              [h("th", { class: "num" }, "Row"), h("th", null, "Column"), h("th", null, "Problem")],
              h(
                "tbody",
                null,
                errors.map((e) =>
                  h("tr", null, h("td", { class: "num" }, e.row), h("td", null, e.column || "—"), h("td", null, e.message)),
                ),
              ),
            ),
          )
        : null,
    ];
    result.replaceChildren(...parts.filter(Boolean));
    return errors.length === 0;
  }

  check.addEventListener("click", async () => {
    const res = await send(true);
    if (!res) return;
    if (res.status !== 200 || !res.body) {
      const e = res.body && res.body.error ? res.body.error : {};
      result.replaceChildren(alertBox("error", e.message || `The node answered ${res.status}.`));
      return;
    }
    const ok = showReport(res.body);
    run.disabled = !ok || res.body.created + res.body.updated === 0;
    run.replaceChildren(icon("check", 18), `Import ${res.body.created + res.body.updated} products`);
  });

  run.addEventListener("click", async () => {
    const res = await send(false);
    if (!res) return;
    if (res.status === 200 && res.body) {
      showReport(res.body);
      run.disabled = true;
      done(res.body);
      setTimeout(close, 1500);
    } else if (res.body && res.body.report) {
      showReport(res.body.report);
    } else {
      const e = res.body && res.body.error ? res.body.error : {};
      result.replaceChildren(alertBox("error", e.message || `The node answered ${res.status}.`));
    }
  });
}
