// The Gallery view: product design sketches from the server's image models (POST /v1/images/generations).
// Pick a category, how many, a seed and one model (or two, side by side, same seed); download a PNG (its
// generation record inside) or save it to the content library (POST /v1/images/library).
//
// This module loads before app.js: it adds its strings to the shared dictionary before app.js first
// translates the page, and notes the view asked for in the address before app.js rewrites it.

import { api, errorText } from "./context.js";
import { $, $$, el, toast } from "./dom.js";
import { STRINGS, t } from "./i18n.js";

const GALLERY_STRINGS = {
  en: {
    "nav.gallery": "Gallery",
    "gallery.title": "Design sketches",
    "gallery.help": "Sketches of a product category from the image models. The same seed gives the same sketches; pick a second model to compare them side by side.",
    "gallery.model": "Image model",
    "gallery.compare": "Compare with",
    "gallery.compare.none": "No second model",
    "gallery.category": "Product category",
    "gallery.n": "Sketches",
    "gallery.seed": "Sketch seed",
    "gallery.seed.placeholder": "random",
    "gallery.size": "Image size",
    "gallery.size.native": "Model's own",
    "gallery.steps": "Diffusion steps",
    "gallery.guidance": "Guidance weight",
    "gallery.generate": "Draw sketches",
    "gallery.generating": "Drawing…",
    "gallery.empty": "No sketches yet: pick a category and generate.",
    "gallery.noModels": "The server has no image model loaded. Start it with `aigc serve --model fashion-sketch`.",
    "gallery.download": "Download PNG",
    "gallery.save": "Save sketch",
    "gallery.saved": "Saved to the library.",
    "gallery.savedButton": "Saved ✓",
    "gallery.column": "{model} · {type} · seed {seed}",
    "gallery.alt": "{label} sketch {index} by {model}",
  },
  zh: {
    "nav.gallery": "图库",
    "gallery.title": "设计草图",
    "gallery.help": "用图像模型生成某一产品类别的草图。相同的种子生成相同的草图；选择第二个模型可并排比较。",
    "gallery.model": "图像模型",
    "gallery.compare": "对比模型",
    "gallery.compare.none": "不对比",
    "gallery.category": "产品类别",
    "gallery.n": "草图数量",
    "gallery.seed": "草图种子",
    "gallery.seed.placeholder": "随机",
    "gallery.size": "图像尺寸",
    "gallery.size.native": "模型原尺寸",
    "gallery.steps": "扩散步数",
    "gallery.guidance": "引导强度",
    "gallery.generate": "生成草图",
    "gallery.generating": "生成中…",
    "gallery.empty": "还没有草图：选择类别后点击生成。",
    "gallery.noModels": "服务器没有加载图像模型。请用 `aigc serve --model fashion-sketch` 启动。",
    "gallery.download": "下载 PNG",
    "gallery.save": "保存草图",
    "gallery.saved": "已保存到内容库。",
    "gallery.savedButton": "已保存 ✓",
    "gallery.column": "{model} · {type} · 种子 {seed}",
    "gallery.alt": "{model} 生成的{label}草图 {index}",
  },
};
for (const [code, strings] of Object.entries(GALLERY_STRINGS)) Object.assign(STRINGS[code], strings);

const DIFFUSION = "aigc-diffusion";
const SIZES = ["", "112x112", "224x224"];
const initialView = location.hash.slice(1); // app.js replaces the hash with its own view when it starts

const gallery = { models: [], results: [], running: false };

function field(id, labelKey, control) {
  return el("div", { class: "field" }, el("label", { for: id, "data-i18n": labelKey }, t(labelKey)), control);
}

function build(section) {
  document.head.append(el("link", { rel: "stylesheet", href: "gallery.css" }));
  const sizeSelect = el("select", { id: "gallery-size" },
    ...SIZES.map((size) => el("option", size ? { value: size } : { value: "", "data-i18n": "gallery.size.native" },
      size || t("gallery.size.native"))));
  section.append(
    el("h1", { id: "gallery-title", class: "panel-title", "data-i18n": "gallery.title" }, t("gallery.title")),
    el("p", { class: "hint", "data-i18n": "gallery.help" }, t("gallery.help")),
    el("form", { id: "gallery-form", class: "gallery-form", novalidate: true },
      field("gallery-model", "gallery.model", el("select", { id: "gallery-model", required: true })),
      field("gallery-compare", "gallery.compare", el("select", { id: "gallery-compare" })),
      field("gallery-label", "gallery.category", el("select", { id: "gallery-label", required: true })),
      field("gallery-n", "gallery.n", el("input", { id: "gallery-n", type: "number", min: "1", max: "16", value: "4" })),
      field("gallery-seed", "gallery.seed", el("input", { id: "gallery-seed", type: "number", min: "0", step: "1",
        "data-i18n-placeholder": "gallery.seed.placeholder", placeholder: t("gallery.seed.placeholder") })),
      field("gallery-size", "gallery.size", sizeSelect),
      el("div", { class: "gallery-diffusion", id: "gallery-diffusion", hidden: true },
        field("gallery-steps", "gallery.steps", el("input", { id: "gallery-steps", type: "number", min: "1", max: "100", value: "25" })),
        field("gallery-guidance", "gallery.guidance", el("input", { id: "gallery-guidance", type: "number", min: "0", max: "20", step: "0.5", value: "2" }))),
      el("div", { class: "gallery-actions" },
        el("button", { type: "submit", class: "button primary", id: "gallery-generate", "data-i18n": "gallery.generate" }, t("gallery.generate")))),
    el("div", { id: "gallery-error", class: "error-box", role: "alert", hidden: true }, el("p")),
    el("div", { id: "gallery-results", class: "gallery-results", "aria-live": "polite" }),
  );
  $("#gallery-model").addEventListener("change", () => { renderLabels(); renderDiffusion(); });
  $("#gallery-compare").addEventListener("change", renderDiffusion);
  $("#gallery-form").addEventListener("submit", generate);
}

async function loadModels() {
  try {
    const body = await api.get("/v1/models");
    gallery.models = (body.data ?? []).filter((model) => model.kind === "image");
  } catch (error) {
    gallery.models = [];
    showError(error);
  }
  const byId = (id) => gallery.models.find((model) => model.id === id);
  const first = $("#gallery-model");
  const second = $("#gallery-compare");
  const [chosenFirst, chosenSecond] = [first.value, second.value];
  first.replaceChildren(...gallery.models.map((model) => el("option", { value: model.id, selected: model.id === chosenFirst }, model.id)));
  second.replaceChildren(el("option", { value: "", "data-i18n": "gallery.compare.none" }, t("gallery.compare.none")),
    ...gallery.models.map((model) => el("option", { value: model.id, selected: model.id === chosenSecond }, model.id)));
  $("#gallery-generate").disabled = !byId(first.value);
  renderLabels();
  renderDiffusion();
  if (!gallery.models.length && !gallery.results.length) {
    $("#gallery-results").replaceChildren(el("p", { class: "muted", "data-i18n": "gallery.noModels" }, t("gallery.noModels")));
  } else if (!gallery.results.length) {
    $("#gallery-results").replaceChildren(el("p", { class: "muted", "data-i18n": "gallery.empty" }, t("gallery.empty")));
  }
}

function selectedModels() {
  const ids = [$("#gallery-model").value, $("#gallery-compare").value].filter(Boolean);
  return [...new Set(ids)].map((id) => gallery.models.find((model) => model.id === id)).filter(Boolean);
}

function renderLabels() {
  const model = gallery.models.find((entry) => entry.id === $("#gallery-model").value);
  const select = $("#gallery-label");
  const chosen = select.value;
  select.replaceChildren(...(model?.class_names ?? []).map((name) => el("option", { value: name, selected: name === chosen }, name)));
}

function renderDiffusion() {
  $("#gallery-diffusion").hidden = !selectedModels().some((model) => model.model_type === DIFFUSION);
}

function showError(error) {
  const box = $("#gallery-error");
  $("p", box).textContent = errorText(error);
  box.hidden = false;
}

function request(model) {
  const number = (id) => {
    const raw = $(id).value.trim();
    return raw === "" ? null : Number(raw);
  };
  const body = { model: model.id, prompt: $("#gallery-label").value, n: number("#gallery-n") ?? 1, response_format: "b64_json" };
  const seed = number("#gallery-seed");
  if (seed !== null) body.seed = seed;
  const size = $("#gallery-size").value;
  if (size) body.size = size;
  if (model.model_type === DIFFUSION) {
    body.steps = number("#gallery-steps") ?? 25;
    body.guidance = number("#gallery-guidance") ?? 2;
  }
  return body;
}

async function generate(event) {
  event.preventDefault();
  if (gallery.running) return;
  const models = selectedModels();
  if (!models.length || !$("#gallery-label").value) return;
  $("#gallery-error").hidden = true;
  gallery.running = true;
  const button = $("#gallery-generate");
  button.disabled = true;
  button.textContent = t("gallery.generating");
  try {
    // The first model's seed goes to the second, so a comparison starts from the same seed.
    const first = await api.post("/v1/images/generations", request(models[0]));
    const results = [{ model: models[0], body: first }];
    if (models[1]) {
      const body = await api.post("/v1/images/generations", { ...request(models[1]), seed: first.seed });
      results.push({ model: models[1], body });
    }
    gallery.results = results;
    renderResults();
  } catch (error) {
    showError(error);
  } finally {
    gallery.running = false;
    button.disabled = false;
    button.textContent = t("gallery.generate");
  }
}

function renderResults() {
  const columns = gallery.results.map(({ model, body }) => el("section", { class: "gallery-column", "aria-label": model.id },
    el("h2", { class: "gallery-column-title" }, t("gallery.column", { model: model.id, type: model.model_type.replace(/^aigc-/, ""), seed: body.seed })),
    el("ul", { class: "gallery-grid" }, ...body.data.map((item, index) => sketchCard(model, body, item, index)))));
  $("#gallery-results").replaceChildren(...columns);
  $("#gallery-results").classList.toggle("compare", columns.length > 1);
}

function sketchCard(model, body, item, index) {
  const label = item.revised_prompt ?? item.provenance?.label ?? "";
  const source = `data:image/png;base64,${item.b64_json}`;
  const save = el("button", { type: "button", class: "button ghost small", "data-save": String(index) }, t(item.saved ? "gallery.savedButton" : "gallery.save"));
  save.disabled = Boolean(item.saved);
  save.addEventListener("click", async () => {
    save.disabled = true;
    try {
      await api.post("/v1/images/library", { b64_json: item.b64_json, tags: ["sketch", label] });
      item.saved = true;
      save.textContent = t("gallery.savedButton");
      toast(t("gallery.saved"));
    } catch (error) {
      save.disabled = false;
      showError(error);
    }
  });
  return el("li", { class: "gallery-card" },
    el("img", { src: source, alt: t("gallery.alt", { label, index: index + 1, model: model.id }), class: "gallery-image" }),
    el("div", { class: "gallery-card-actions" },
      el("a", { class: "button ghost small", href: source, download: `${model.id}-${label}-seed${body.seed}-${index}.png` }, t("gallery.download")),
      save));
}

function show(visible) {
  const section = $("#view-gallery");
  // built on first use: until then the page holds no second "seed" or "model" field next to the Create view's
  if (visible && !section.childElementCount) build(section);
  section.hidden = !visible;
  if (visible) loadModels();
}

function setup() {
  if (!$("#view-gallery")) return;
  // app.js's showView hides its own views and marks the pressed button; this module shows or hides the gallery.
  for (const button of $$(".nav-button")) button.addEventListener("click", () => show(button.dataset.view === "gallery"));
  window.addEventListener("hashchange", () => {
    if (location.hash === "#gallery") $(".nav-button[data-view='gallery']").click();
  });
  // Dynamic text follows the interface language (app.js translates the data-i18n elements itself).
  for (const button of $$("[data-ui-language]")) button.addEventListener("click", () => { if (gallery.results.length) renderResults(); });
  if (initialView === "gallery") $(".nav-button[data-view='gallery']").click();
}

// Run once app.js has set the page up (module scripts all run before DOMContentLoaded).
document.addEventListener("DOMContentLoaded", setup);
