// The Library view: search, tag and task filters, edit, delete and export of saved content.

import { ChipInput } from "./chips.js";
import { api, showBoxError, state, taskLabel } from "./context.js";
import { $, $$, debounce, el, formatTime, toast } from "./dom.js";
import { LANGUAGES, t } from "./i18n.js";

const LIBRARY_PAGE = 20;
let itemTags = null; // the tag chips of the edit dialog

function libraryQuery() {
  const params = new URLSearchParams();
  const q = $("#library-search").value.trim();
  if (q) params.set("q", q);
  const tag = $("#library-tag").value;
  if (tag) params.set("tag", tag);
  return params;
}

/** Fetch the first page (or, with append, the next one) of items matching the search and filters. */
export async function loadLibrary({ append = false } = {}) {
  const params = libraryQuery();
  const task = $("#library-task").value;
  if (task) params.set("task", task);
  params.set("limit", String(LIBRARY_PAGE));
  params.set("offset", String(append ? state.library.items.length : 0));
  const box = $("#library-error");
  box.hidden = true;
  const requestId = (loadLibrary.counter = (loadLibrary.counter ?? 0) + 1);
  try {
    const body = await api.get(`/v1/library?${params}`);
    if (requestId !== loadLibrary.counter) return; // a newer search is already on its way
    const items = body.data ?? [];
    state.library.items = append ? [...state.library.items, ...items] : items;
    state.library.total = body.total ?? state.library.items.length;
    state.library.loaded = true;
    for (const item of items) for (const tag of item.tags ?? []) state.library.tags.add(tag);
    renderLibrary();
  } catch (error) {
    showBoxError(box, error);
  }
}

function renderTagFilter() {
  const select = $("#library-tag");
  const chosen = select.value;
  const tags = [...state.library.tags].sort((a, b) => a.localeCompare(b));
  select.replaceChildren(el("option", { value: "" }, t("library.tag.all")),
    ...tags.map((tag) => el("option", { value: tag, selected: tag === chosen }, tag)));
}

export function renderLibrary() {
  renderTagFilter();
  const { items, total } = state.library;
  const filtered = libraryQuery().toString() || $("#library-task").value;
  $("#library-count").textContent = items.length ? t("library.count", { shown: items.length, total }) : "";
  const list = $("#library-list");
  if (!items.length) {
    list.replaceChildren(el("li", { class: "empty-line muted" }, t(filtered ? "library.noMatch" : "library.empty")));
  } else {
    list.replaceChildren(...items.map((item) => el("li", { class: "library-item" },
      el("article", {},
        el("header", { class: "library-item-head" },
          el("h3", {}, el("button", { type: "button", class: "link-button", onclick: () => openItem(item) }, item.title || "—")),
          el("span", { class: "pill" }, taskLabel(item.task)),
          item.language ? el("span", { class: "pill subtle" }, LANGUAGES[item.language] ?? item.language) : null),
        el("p", { class: "library-text" }, item.text),
        el("footer", { class: "library-item-foot" },
          el("ul", { class: "chips static" }, ...(item.tags ?? []).map((tag) => el("li", { class: "chip" },
            el("button", { type: "button", class: "chip-filter", onclick: () => filterByTag(tag) }, `#${tag}`)))),
          el("span", { class: "muted small" }, t("library.updated", { when: formatTime(item.updated_at ?? item.created_at) })),
          el("span", { class: "grow" }),
          el("button", { type: "button", class: "button ghost small", onclick: () => openItem(item) }, t("library.open")),
          el("button", { type: "button", class: "button ghost small danger-text", onclick: () => deleteItem(item) }, t("library.delete")))))));
  }
  $("#library-more").hidden = items.length >= total;
}

function filterByTag(tag) {
  state.library.tags.add(tag);
  renderTagFilter();
  $("#library-tag").value = tag;
  loadLibrary();
}

function openItem(item) {
  state.libraryItem = item;
  const dialog = $("#item-dialog");
  $("#item-error").hidden = true;
  $("#item-meta").textContent = `${taskLabel(item.task)} · ${formatTime(item.created_at)}`;
  $("#item-title").value = item.title ?? "";
  $("#item-text").value = item.text ?? "";
  itemTags.set(item.tags ?? []);
  dialog.showModal();
  $("#item-title").focus();
}

async function saveItem(event) {
  event.preventDefault();
  const item = state.libraryItem;
  try {
    await api.patch(`/v1/library/${encodeURIComponent(item.id)}`, {
      title: $("#item-title").value.trim(), text: $("#item-text").value, tags: itemTags.values(),
    });
    $("#item-dialog").close();
    toast(t("library.edit.saved"));
    await loadLibrary();
  } catch (error) {
    showBoxError($("#item-error"), error);
  }
}

function confirmDialog(message) {
  const dialog = $("#confirm-dialog");
  $("#confirm-message").textContent = message;
  dialog.returnValue = "";
  dialog.showModal();
  $("button[value='cancel']", dialog).focus();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "yes"), { once: true });
  });
}

async function deleteItem(item) {
  const title = item.title || "—";
  if (!(await confirmDialog(t("library.delete.confirm", { title })))) return;
  try {
    await api.delete(`/v1/library/${encodeURIComponent(item.id)}`);
    if ($("#item-dialog").open) $("#item-dialog").close();
    toast(t("library.deleted", { title }));
    await loadLibrary();
  } catch (error) {
    showBoxError($("#item-dialog").open ? $("#item-error") : $("#library-error"), error);
  }
}

async function exportLibrary(format) {
  const params = libraryQuery();
  if ($("#library-task").value) params.set("task", $("#library-task").value);
  params.set("format", format);
  const extension = { csv: "csv", json: "json", markdown: "md" }[format];
  $("#library-error").hidden = true;
  try {
    const { blob, name } = await api.download(`/v1/library/export?${params}`, `aigc-library.${extension}`);
    // The key travels in a header, so the file is fetched here and handed to the browser as a blob.
    const url = URL.createObjectURL(blob);
    const link = el("a", { href: url, download: name, hidden: true });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10_000);
    toast(t("library.exported", { file: name }));
  } catch (error) {
    showBoxError($("#library-error"), error);
  }
}

/** Wire the library view and its dialogs. */
export function setupLibrary() {
  itemTags = new ChipInput($("#item-tags"));
  $("#library-search").addEventListener("input", debounce(() => loadLibrary(), 250));
  $("#library-tag").addEventListener("change", () => loadLibrary());
  $("#library-task").addEventListener("change", () => loadLibrary());
  $("#library-more").addEventListener("click", () => loadLibrary({ append: true }));
  for (const button of $$("[data-export]")) button.addEventListener("click", () => exportLibrary(button.dataset.export));
  $("#item-form").addEventListener("submit", saveItem);
  $("#item-delete").addEventListener("click", () => deleteItem(state.libraryItem));
}

/** Redraw the view's dynamic parts in the interface language. */
export function translateLibrary() {
  itemTags?.render();
  renderLibrary();
}
