// Products: list and search, create, edit, archive, variants. When two devices changed the same
// field at the same time, both values are shown and an owner or manager picks one.

import { get, post, patch, humanError } from "../lib/api.js";
import { h, add, icon, field, busy, toast, alertBox, openDialog, showFormError, debounce, table } from "../lib/dom.js";
import { money, parseMoney, decimal, percent } from "../lib/format.js";
import { importProductsDialog } from "../lib/import.js";

const FIELD_LABEL = {
  sku: "SKU",
  barcode: "Barcode",
  name: "Name",
  category: "Category",
  unit: "Unit",
  price: "Price",
  cost: "Cost",
  tax_rate: "Tax rate",
  reorder_level: "Reorder level",
  archived: "Archived",
};

function showValue(fieldName, v) {
  if (v === null || v === undefined || v === "") return "(empty)";
  if (fieldName === "price" || fieldName === "cost") return money(v);
  if (fieldName === "tax_rate") return percent(v);
  if (fieldName === "archived") return v ? "archived" : "on sale";
  return String(v);
}

export async function render(main, app) {
  let products = [];
  let showArchived = false;
  const canEdit = app.can("manager");
  const search = h("input", {
    type: "search",
    id: "product-search",
    placeholder: "Search name, SKU or barcode",
    "aria-label": "Search products",
  });
  const archivedToggle = h("input", { type: "checkbox", id: "show-archived" });
  const tbody = h("tbody", { id: "product-rows" });
  const conflictsBox = h("div", { id: "conflicts-banner" });

  add(
    main,
    h(
      "div",
      { class: "screen-head" },
      h("h1", null, "Products"),
      h("span", { class: "spacer" }),
      h("div", { class: "search" }, icon("search"), search),
      h("label", { class: "check", for: "show-archived" }, archivedToggle, "Show archived"),
      canEdit
        ? h(
            "a",
            { class: "btn", id: "export-products", href: "/api/v1/export/products.csv", download: "products.csv" },
            icon("download", 18),
            "Export CSV",
          )
        : null,
      canEdit
        ? h(
            "button",
            {
              type: "button",
              class: "btn",
              id: "import-products",
              onclick: () =>
                importProductsDialog((report) => {
                  toast(`Imported: ${report.created} created, ${report.updated} updated`, "ok");
                  load();
                }),
            },
            icon("box_in", 18),
            "Import CSV",
          )
        : null,
      canEdit
        ? h(
            "button",
            { type: "button", class: "btn btn-primary", id: "new-product", onclick: () => editor(null) },
            icon("plus", 18),
            "New product",
          )
        : null,
    ),
    canEdit
      ? null
      : h(
          "div",
          { class: "panel" },
          alertBox(
            "info",
            "You can look products up here. Only managers and owners can add products or change prices.",
          ),
        ),
    conflictsBox,
    h(
      "section",
      { class: "panel" },
      h(
        "div",
        { class: "table-wrap" },
        table(
          { id: "product-table", class: "cards" },
          [
            h("th", null, "Product"),
            h("th", { class: "hide-narrow" }, "Barcode"),
            h("th", { class: "num" }, "Price"),
            h("th", { class: "num hide-narrow" }, "Tax"),
            h("th", { class: "hide-narrow" }, "Variants"),
            h("th", null, h("span", { class: "sr-only" }, "Actions")),
          ],
          tbody,
        ),
      ),
    ),
  );

  async function load() {
    products = await get("/products?include_archived=true");
    draw();
  }

  function draw() {
    const q = search.value.trim().toLowerCase();
    const list = products
      .filter((p) => showArchived || !p.archived)
      .filter((p) => !q || [p.name, p.sku, p.barcode || "", p.category || ""].some((x) => x.toLowerCase().includes(q)))
      .sort((a, b) => a.name.localeCompare(b.name));
    const conflicted = products.filter((p) => Object.keys(p.conflicts || {}).length);
    conflictsBox.replaceChildren(
      conflicted.length && canEdit
        ? h(
            "div",
            { class: "panel" },
            alertBox(
              "warn",
              h(
                "span",
                null,
                `${conflicted.length === 1 ? "One product was" : `${conflicted.length} products were`} changed on two devices at the same time. Open `,
                conflicted.map((p, i) => [
                  i ? ", " : "",
                  h(
                    "a",
                    {
                      href: "#/products",
                      onclick: (e) => {
                        e.preventDefault();
                        editor(p);
                      },
                    },
                    p.name,
                  ),
                ]),
                " to choose which values to keep.",
              ),
            ),
          )
        : "",
    );
    if (!list.length) {
      tbody.replaceChildren(
        h(
          "tr",
          null,
          h(
            "td",
            { colspan: 6, class: "empty" },
            products.length
              ? "Nothing matches."
              : canEdit
                ? "No products yet. Add your first with “New product”."
                : "No products yet.",
          ),
        ),
      );
      return;
    }
    tbody.replaceChildren(
      ...list.map((p) =>
        h(
          "tr",
          { dataset: { id: p.id, sku: p.sku } },
          h(
            "td",
            null,
            h(
              "div",
              { class: "cell-name" },
              p.name,
              " ",
              p.archived ? h("span", { class: "badge" }, "Archived") : null,
              Object.keys(p.conflicts || {}).length
                ? h("span", { class: "badge badge-low" }, icon("warn", 12), "Conflict")
                : null,
            ),
            h("div", { class: "cell-sub" }, p.sku, p.category ? ` · ${p.category}` : ""),
          ),
          h("td", { class: "hide-narrow mono small" }, p.barcode || ""),
          h("td", { class: "num" }, money(p.price)),
          h("td", { class: "num hide-narrow" }, percent(p.tax_rate)),
          h("td", { class: "hide-narrow" }, p.variants.length ? `${p.variants.length}` : ""),
          h(
            "td",
            null,
            h(
              "div",
              { class: "row end" },
              h(
                "button",
                { type: "button", class: "btn btn-small", dataset: { action: "edit" }, onclick: () => editor(p) },
                canEdit ? [icon("edit", 16), "Edit"] : "View",
              ),
            ),
          ),
        ),
      ),
    );
  }

  function editor(p) {
    const isNew = !p;
    const ro = !canEdit;
    const inp = (name, value, attrs = {}) => h("input", { name, value: value ?? "", readonly: ro, ...attrs });
    const f = {
      name: inp("name", p && p.name, { id: "p-name", required: true }),
      sku: inp("sku", p && p.sku, { id: "p-sku", required: true, autocapitalize: "characters" }),
      barcode: inp("barcode", p && p.barcode, { id: "p-barcode", inputmode: "numeric", placeholder: "Scan it here" }),
      category: inp("category", p && p.category, { id: "p-category" }),
      unit: inp("unit", p ? p.unit : "pcs", { id: "p-unit" }),
      price: inp("price", p ? decimal(p.price) : "", { id: "p-price", inputmode: "decimal" }),
      cost: inp("cost", p && p.cost ? decimal(p.cost) : "", { id: "p-cost", inputmode: "decimal" }),
      tax_rate: inp("tax_rate", p ? String(p.tax_rate / 100) : "", { id: "p-tax", inputmode: "decimal" }),
      reorder_level: inp("reorder_level", p && p.reorder_level !== null ? String(p.reorder_level) : "", {
        id: "p-reorder",
        type: "number",
        min: 0,
      }),
    };
    // A scanner presses Enter after the code: keep it from submitting the form.
    f.barcode.addEventListener("keydown", (e) => {
      if (e.key === "Enter") {
        e.preventDefault();
        f.price.focus();
      }
    });
    const newVariants = [];
    const variantRows = h("tbody");
    const drawVariants = () => {
      const rows = [
        ...(p ? p.variants : []).map((v) =>
          h(
            "tr",
            null,
            h("td", null, v.name),
            h("td", null, v.sku),
            h("td", { class: "mono small" }, v.barcode || ""),
            h("td", { class: "num" }, v.price !== null ? money(v.price) : "same"),
          ),
        ),
        ...newVariants.map((v) =>
          h(
            "tr",
            null,
            h("td", null, v.inputs.name),
            h("td", null, v.inputs.sku),
            h("td", null, v.inputs.barcode),
            h("td", null, v.inputs.price),
          ),
        ),
      ];
      variantRows.replaceChildren(
        ...(rows.length
          ? rows
          : [h("tr", null, h("td", { colspan: 4, class: "muted" }, "No variants: this product is sold as it is."))]),
      );
    };
    const addVariant = () => {
      const v = {
        inputs: {
          name: h("input", { "aria-label": "Variant name", placeholder: "e.g. Large" }),
          sku: h("input", { "aria-label": "Variant SKU" }),
          barcode: h("input", { "aria-label": "Variant barcode" }),
          price: h("input", { "aria-label": "Variant price", inputmode: "decimal", placeholder: "same" }),
        },
      };
      newVariants.push(v);
      drawVariants();
      v.inputs.name.focus();
    };
    drawVariants();

    const form = h("form", { class: "stack", novalidate: true, id: "product-form" });
    if (p && canEdit && Object.keys(p.conflicts || {}).length) form.appendChild(conflictPicker(p));
    if (ro) form.appendChild(alertBox("info", "Only managers and owners can change products."));
    add(
      form,
      h(
        "div",
        { class: "fields" },
        field("Name", f.name, null, true),
        field("SKU", f.sku, "Your own short code."),
        field("Barcode", f.barcode, "Optional. Scan the product's barcode."),
        field(`Price (${app.settings.tax_mode === "inclusive" ? "tax included" : "before tax"})`, f.price),
        field("Tax rate %", f.tax_rate, "e.g. 20 or 5.5"),
        field("Cost", f.cost, "Default cost per unit when receiving stock."),
        field(
          "Reorder level",
          f.reorder_level,
          `Low stock at or below this (shop default ${app.settings.low_stock_default}).`,
        ),
        field("Category", f.category),
        field("Unit", f.unit),
      ),
      h("h3", null, "Variants"),
      h(
        "div",
        { class: "table-wrap" },
        table(
          null,
          [
            h("th", null, "Name"),
            h("th", null, "SKU"),
            h("th", null, "Barcode"),
            h("th", { class: "num" }, "Price"),
          ],
          variantRows,
        ),
      ),
      canEdit
        ? h(
            "button",
            { type: "button", class: "btn btn-small", onclick: addVariant },
            icon("plus", 16),
            "Add a variant",
          )
        : null,
    );

    const actions = [];
    if (canEdit && p) {
      actions.push(
        h(
          "button",
          {
            type: "button",
            class: p.archived ? "btn" : "btn btn-danger",
            id: "archive-product",
            onclick: () => archive(!p.archived),
          },
          p.archived ? "Put back on sale" : "Archive",
        ),
      );
    }
    const save = canEdit
      ? h(
          "button",
          { type: "button", class: "btn btn-primary", id: "save-product", onclick: () => form.requestSubmit() },
          isNew ? "Create product" : "Save changes",
        )
      : null;
    if (save) actions.push(save);
    else actions.push(h("button", { type: "button", class: "btn", onclick: () => d.close() }, "Close"));
    const d = openDialog({ title: isNew ? "New product" : p.name, body: form, actions, wide: true });

    async function archive(flag) {
      try {
        await patch(`/products/${p.id}`, { archived: flag });
        toast(flag ? `${p.name} archived: no longer on sale.` : `${p.name} is on sale again.`);
        d.close();
        await load();
      } catch (err) {
        showFormError(form, err);
      }
    }

    function read() {
      const err = (message, fieldName) => {
        throw Object.assign(new Error(message), { field: fieldName });
      };
      const price = parseMoney(f.price.value);
      if (price === null || price < 0) err("Type the price like 2.50.", "price");
      const cost = f.cost.value.trim() ? parseMoney(f.cost.value) : 0;
      if (cost === null || cost < 0) err("Type the cost like 1.20, or leave it empty.", "cost");
      const rate = f.tax_rate.value.trim() ? Number(f.tax_rate.value.replace(",", ".")) : 0;
      if (!(rate >= 0 && rate <= 100)) err("The tax rate is a percentage, like 20.", "tax_rate");
      const reorder = f.reorder_level.value.trim() ? Math.floor(Number(f.reorder_level.value)) : null;
      const variants = newVariants
        .map((v, i) => {
          const vp = v.inputs.price.value.trim() ? parseMoney(v.inputs.price.value) : null;
          if (v.inputs.price.value.trim() && vp === null)
            err(`Variant ${i + 1}: type the price like 2.50, or leave it empty.`);
          return {
            name: v.inputs.name.value.trim(),
            sku: v.inputs.sku.value.trim(),
            barcode: v.inputs.barcode.value.trim() || null,
            price: vp,
          };
        })
        .filter((v) => v.name || v.sku);
      return {
        name: f.name.value.trim(),
        sku: f.sku.value.trim(),
        barcode: f.barcode.value.trim() || null,
        category: f.category.value.trim() || null,
        unit: f.unit.value.trim() || "pcs",
        price,
        cost,
        tax_rate: Math.round(rate * 100),
        reorder_level: reorder,
        variants,
      };
    }

    form.addEventListener("submit", (e) => {
      e.preventDefault();
      if (!canEdit) return;
      let v;
      try {
        v = read();
      } catch (err) {
        showFormError(form, err);
        return;
      }
      busy(save, form, async () => {
        if (isNew) {
          await post("/products", v);
          toast(`${v.name} added.`);
        } else {
          const change = {};
          for (const k of [
            "name",
            "sku",
            "barcode",
            "category",
            "unit",
            "price",
            "cost",
            "tax_rate",
            "reorder_level",
          ]) {
            if ((p[k] ?? null) !== (v[k] ?? null)) change[k] = v[k];
          }
          if (v.variants.length) change.add_variants = v.variants;
          if (!Object.keys(change).length) {
            d.close();
            return;
          }
          await patch(`/products/${p.id}`, change);
          toast(`${v.name} saved.`);
        }
        d.close();
        await load();
      });
    });
  }

  /// Both values of each field changed concurrently; picking one writes it, which settles it.
  function conflictPicker(p) {
    const box = h(
      "div",
      { id: "conflict-picker" },
      h("h3", null, "Changed on two devices at the same time"),
      h("p", { class: "muted" }, "Choose the value to keep. The other devices will take your choice."),
    );
    for (const [name, values] of Object.entries(p.conflicts)) {
      box.appendChild(
        h(
          "div",
          { class: "conflict", dataset: { field: name } },
          h("strong", null, FIELD_LABEL[name] || name),
          h(
            "div",
            { class: "row" },
            values.map((v) =>
              h(
                "button",
                {
                  type: "button",
                  class: "btn",
                  onclick: async (e) => {
                    e.target.disabled = true;
                    try {
                      await patch(`/products/${p.id}`, { [name]: v });
                      toast(`${FIELD_LABEL[name] || name} set to ${showValue(name, v)}.`);
                      for (const dlg of document.querySelectorAll("dialog")) dlg.close();
                      await load();
                    } catch (err) {
                      e.target.disabled = false;
                      toast(humanError(err), "error");
                    }
                  },
                },
                `Keep ${showValue(name, v)}`,
              ),
            ),
          ),
        ),
      );
    }
    return box;
  }

  search.addEventListener("input", draw);
  archivedToggle.addEventListener("change", () => {
    showArchived = archivedToggle.checked;
    draw();
  });
  const reload = debounce(() => load().catch((err) => toast(humanError(err), "error")), 200);
  app.onEvent((ev) => {
    if (["product_changed", "lagged", "changes_dropped"].includes(ev.type)) reload();
  });
  await load();
}
