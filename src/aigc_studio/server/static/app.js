// AIGC Studio in the browser: a brief → streamed, ranked candidates → pick, edit, save → the library.
// Plain ES modules, no build step: every string is in i18n.js, every server call in api.js.

import { normalizeLogprobs } from "./api.js";
import { ChipInput } from "./chips.js";
import { STORAGE, api, errorText, state, taskDescription, taskLabel } from "./context.js";
import { $, $$, el, formatTime, toast } from "./dom.js";
import { renderHeatmap } from "./heatmap.js";
import { LOWER_IS_BETTER, has, language, setLanguage, t, translateTree } from "./i18n.js";
import { loadLibrary, setupLibrary, translateLibrary } from "./library.js";

const HISTORY_LIMIT = 30;
const TOP_LOGPROBS = 3;
// Empty cards shown while the first words are on their way (the server's default max_n); a larger n that the
// server accepts still gets a card per candidate as its text arrives.
const PLACEHOLDER_CARDS = 16;
const TONES = ["friendly", "playful", "professional", "luxurious", "warm"];
const EXAMPLES = {
  en: { facts: [["name", "The Eagle"], ["eatType", "pub"], ["food", "French"], ["area", "riverside"], ["familyFriendly", "yes"]],
    keywords: ["riverside"], audience: "families with young children", tone: "friendly" },
  zh: { facts: [["类型", "裤"], ["版型", "宽松"], ["风格", "简约"], ["材质", "牛仔布"]],
    keywords: ["宽松"], audience: "年轻上班族", tone: "活泼" },
};

// ====================================================================== errors in the brief

// Fields of the brief that an error's "param" can point at; the first match gets the focus.
const PARAM_FIELDS = {
  task: () => $("#task-cards input"),
  attributes: () => (state.factsMode === "text" ? $("#facts-text") : $("#fact-rows input")),
  audience: () => $("#audience"),
  tone: () => $("#tone"),
  keywords: () => $("#keywords-input"),
  forbidden_words: () => $("#forbidden-input"),
  forbid: () => $("#forbidden-input"),
  language: () => $("#content-language"),
  n: () => $("#n"),
  model: () => $("#model"),
  temperature: () => $("#temperature"),
  seed: () => $("#seed"),
  length: () => $("#length"),
};

function showError(error) {
  const box = $("#error-box");
  $("#error-message").textContent = errorText(error);
  const param = error.param ?? null;
  $("#error-param").textContent = param ? t("error.param", { param }) : "";
  $("#error-param").hidden = !param;
  box.hidden = false;
  const field = param && PARAM_FIELDS[String(param).split(/[.[]/)[0]]?.();
  if (field) {
    field.setAttribute("aria-invalid", "true");
    field.setAttribute("aria-errormessage", "error-message");
  }
}

function hideError() {
  $("#error-box").hidden = true;
  for (const field of $$("[aria-invalid='true']")) {
    field.removeAttribute("aria-invalid");
    field.removeAttribute("aria-errormessage");
  }
}

// ====================================================================== facts (attributes)

function addFactRow(key = "", value = "", { focus = false } = {}) {
  const rows = $("#fact-rows");
  const row = el("div", { class: "fact-row" },
    el("input", { type: "text", class: "fact-key", value: key, autocomplete: "off", spellcheck: "false" }),
    el("input", { type: "text", class: "fact-value", value, autocomplete: "off" }),
    el("button", { type: "button", class: "button ghost icon", "data-remove": "" }, "×"));
  rows.append(row);
  labelFactRows();
  if (focus) $(".fact-key", row).focus();
  return row;
}

function labelFactRows() {
  $$("#fact-rows .fact-row").forEach((row, i) => {
    const n = i + 1;
    $(".fact-key", row).setAttribute("aria-label", t("brief.facts.keyN", { n }));
    $(".fact-value", row).setAttribute("aria-label", t("brief.facts.valueN", { n }));
    $("[data-remove]", row).setAttribute("aria-label", t("brief.facts.remove", { n }));
  });
}

function factRows() {
  return $$("#fact-rows .fact-row").map((row) => [$(".fact-key", row).value.trim(), $(".fact-value", row).value.trim()])
    .filter(([key, value]) => key || value);
}

function setFactRows(pairs) {
  $("#fact-rows").replaceChildren();
  for (const [key, value] of pairs) addFactRow(key, value);
  if (!pairs.length) addFactRow();
}

/** Pairs from "name[The Eagle], eatType[pub]" or "name=The Eagle; food=French"; null for any other form. */
function parseFactsText(text) {
  const source = text.trim();
  if (!source) return [];
  const bracket = /\s*([^[\],]+?)\s*\[([^\]]*)\]\s*(?:,|$)/gy;
  const pairs = [];
  let match;
  while ((match = bracket.exec(source)) !== null) {
    pairs.push([match[1].trim(), match[2].trim()]);
    if (bracket.lastIndex >= source.length) return pairs;
  }
  if (/^[^=;[\]{}]+=[^;]*(;[^=;[\]{}]+=[^;]*)*;?$/.test(source)) {
    return source.split(";").filter((part) => part.trim()).map((part) => {
      const at = part.indexOf("=");
      return [part.slice(0, at).trim(), part.slice(at + 1).trim()];
    });
  }
  return null;
}

function factsAsText(pairs) {
  return pairs.map(([key, value]) => `${key}[${value}]`).join(", ");
}

function setFactsMode(mode) {
  const note = $("#facts-note");
  note.hidden = true;
  if (mode === state.factsMode) return;
  if (mode === "text") {
    $("#facts-text").value = factsAsText(factRows());
  } else {
    const pairs = parseFactsText($("#facts-text").value);
    if (pairs === null) {
      note.textContent = t("brief.facts.unparsed");
      note.hidden = false;
      return;
    }
    setFactRows(pairs);
  }
  state.factsMode = mode;
  $("#facts-rows-panel").hidden = mode !== "rows";
  $("#facts-text-panel").hidden = mode !== "text";
  for (const button of $$("[data-facts-mode]")) button.setAttribute("aria-pressed", String(button.dataset.factsMode === mode));
}

/** The attributes to send: the raw text (the server reads every accepted form) or an object of the rows. */
function factsForRequest() {
  if (state.factsMode === "text") return $("#facts-text").value.trim();
  const pairs = factRows();
  return pairs.length ? Object.fromEntries(pairs) : "";
}

function fillExample() {
  // A Chinese example only where the chosen task has a Chinese model, so that the example always generates.
  const task = state.tasks.find((item) => item.name === selectedTask());
  const chinese = $("#content-language").value === "zh"
    || (!$("#content-language").value && language() === "zh" && Boolean(task?.default_models?.zh));
  const example = chinese ? EXAMPLES.zh : EXAMPLES.en;
  setFactsMode("rows");
  setFactRows(example.facts);
  chips.keywords.set(example.keywords);
  if (!$("#audience").value) $("#audience").value = example.audience;
  if (!$("#tone").value) $("#tone").value = example.tone;
}

// ====================================================================== tasks and models

const TASK_ICONS = { "ad-copy": "✺", "product-description": "▤", "social-post": "#", "blog-draft": "✎", "email-subject": "✉" };

function selectedTask() {
  return $("#task-cards input:checked")?.value ?? null;
}

function renderTasks() {
  const box = $("#task-cards");
  if (!state.tasks.length) return;
  const current = selectedTask() ?? (state.tasks.some((task) => task.name === "ad-copy") ? "ad-copy" : state.tasks[0].name);
  box.replaceChildren(...state.tasks.map((task) => el("label", { class: "task-card" },
    el("input", { type: "radio", name: "task", value: task.name, class: "sr-only", checked: task.name === current }),
    el("span", { class: "task-card-body" },
      el("span", { class: "task-icon", "aria-hidden": "true" }, TASK_ICONS[task.name] ?? "✦"),
      el("span", { class: "task-name" }, taskLabel(task.name)),
      el("span", { class: "task-desc" }, taskDescription(task))))));
  const filter = $("#library-task");
  const chosen = filter.value;
  filter.replaceChildren(el("option", { value: "" }, t("library.task.all")),
    ...state.tasks.map((task) => el("option", { value: task.name, selected: task.name === chosen }, taskLabel(task.name))));
}

async function loadTasks() {
  try {
    const body = await api.get("/v1/tasks");
    state.tasks = body.data ?? [];
    renderTasks();
  } catch (error) {
    const box = $("#task-cards");
    box.replaceChildren(el("p", { class: "error-inline", role: "alert" }, errorText(error), " ",
      el("button", { type: "button", class: "button link small", onclick: () => loadTasks() }, "↻")));
  }
}

async function loadModels() {
  try {
    const body = await api.get("/v1/models");
    // image models (kind "image") draw sketches in the Gallery; they cannot write copy
    state.models = (body.data ?? []).filter((model) => (model.kind ?? "text") === "text").map((model) => model.id);
  } catch {
    state.models = []; // the task default still works; the tasks call reports connection or key problems
  }
  const select = $("#model");
  const chosen = select.value;
  select.replaceChildren(el("option", { value: "" }, t("brief.model.default")),
    ...state.models.map((id) => el("option", { value: id, selected: id === chosen }, id)));
}

function renderTones() {
  $("#tone-options").replaceChildren(...TONES.map((tone) => el("option", { value: t(`tone.${tone}`) })));
}

// ====================================================================== the brief → a request

function readRequest() {
  const task = selectedTask();
  if (!task) throw Object.assign(new Error(t("error.noTask")), { param: "task" });
  const attributes = factsForRequest();
  if (!attributes) throw Object.assign(new Error(t("error.noFacts")), { param: "attributes" });
  const numberOrNull = (selector) => {
    const raw = $(selector).value.trim();
    return raw === "" ? null : Number(raw);
  };
  return {
    task,
    attributes,
    audience: $("#audience").value.trim() || null,
    tone: $("#tone").value.trim() || null,
    keywords: chips.keywords.values(),
    forbidden_words: chips.forbidden.values(),
    language: $("#content-language").value || null,
    length: numberOrNull("#length"),
    n: numberOrNull("#n") ?? 1,
    model: $("#model").value || null,
    temperature: state.temperatureTouched ? Number($("#temperature").value) : null,
    seed: numberOrNull("#seed"),
    // Token probabilities for the "Explain" heat map, with the runners-up of each token.
    logprobs: true,
    top_logprobs: TOP_LOGPROBS,
  };
}

function writeRequest(request) {
  const radio = $$("#task-cards input").find((input) => input.value === request.task);
  if (radio) radio.checked = true;
  if (typeof request.attributes === "string") {
    state.factsMode = "rows"; // force the switch so the text box is shown with this text
    setFactsMode("text");
    $("#facts-text").value = request.attributes;
  } else {
    setFactsMode("rows");
    setFactRows(Object.entries(request.attributes ?? {}));
  }
  $("#audience").value = request.audience ?? "";
  $("#tone").value = request.tone ?? "";
  chips.keywords.set(request.keywords);
  chips.forbidden.set(request.forbidden_words);
  $("#content-language").value = request.language ?? "";
  $("#n").value = request.n ?? 3;
  $("#length").value = request.length ?? "";
  $("#seed").value = request.seed ?? "";
  $("#model").value = request.model ?? "";
  state.temperatureTouched = request.temperature !== null && request.temperature !== undefined;
  if (state.temperatureTouched) $("#temperature").value = request.temperature;
  renderTemperature();
}

/** The slider's reading: its value once moved, else "model default" (null is sent and the model's own applies). */
function renderTemperature() {
  $("#temperature-value").value = state.temperatureTouched
    ? Number($("#temperature").value).toFixed(2) : t("brief.temperature.default");
}

// ====================================================================== generating

function cardFor(index) {
  let card = state.run.cards.get(index);
  if (!card) {
    card = newCard();
    $(".rank-badge", card).textContent = t("card.candidate", { n: index + 1 });
    card.classList.add("streaming");
    state.run.cards.set(index, card);
    // Keep streaming cards in candidate order whatever order their first pieces arrive in.
    const later = [...state.run.cards.entries()].filter(([i]) => i > index).sort(([a], [b]) => a - b)[0];
    $("#candidates").insertBefore(card, later ? later[1] : null);
  }
  return card;
}

function newCard() {
  return $("#candidate-template").content.firstElementChild.cloneNode(true);
}

async function generate(event) {
  event.preventDefault();
  hideError();
  if (state.run) return;
  let request;
  try {
    request = readRequest();
  } catch (error) {
    showError(error);
    return;
  }
  const controller = new AbortController();
  state.run = { controller, cards: new Map(), started: performance.now() };
  state.result = null;
  state.picked = null;
  state.savedRanks = new Set();
  $("#candidates").replaceChildren();
  $("#run-notes").hidden = true;
  for (let i = 0; i < Math.min(request.n, PLACEHOLDER_CARDS); i += 1) cardFor(i);
  setBusy(true);
  $("#run-status").textContent = t("results.generating", { n: request.n });
  // On a narrow screen the candidates sit below the brief: bring them into view as they start to stream.
  if (window.matchMedia("(max-width: 960px)").matches) $(".results").scrollIntoView({ behavior: "smooth" });
  try {
    const result = await api.streamContent(request, {
      signal: controller.signal,
      onDelta: (index, text) => {
        const target = $(".candidate-text", cardFor(index));
        target.textContent += text;
      },
    });
    const seconds = ((performance.now() - state.run.started) / 1000).toFixed(1);
    state.run = null;
    showResult(request, result);
    $("#run-status").textContent = t("results.done", { n: result.candidates?.length ?? 0, seconds });
    remember(request, result);
  } catch (error) {
    const streamed = state.run && [...state.run.cards.values()].some((card) => $(".candidate-text", card).textContent);
    for (const card of state.run?.cards.values() ?? []) card.classList.remove("streaming");
    if (error.name === "AbortError") {
      $("#run-status").textContent = t("results.stopped");
    } else {
      $("#run-status").textContent = "";
      showError(error);
    }
    if (!streamed) showEmpty();
  } finally {
    state.run = null;
    setBusy(false);
  }
}

function setBusy(busy) {
  $("#generate").disabled = busy;
  $("#generate").setAttribute("aria-busy", String(busy));
  $("#stop").hidden = !busy;
  $("#candidates").setAttribute("aria-busy", String(busy));
}

let emptyState = null; // the page's "your candidates appear here" block, kept to put back after a failed run

function showEmpty() {
  const box = emptyState.cloneNode(true);
  translateTree(box);
  $("#candidates").replaceChildren(box);
}

// ====================================================================== candidates with score cards

function showResult(request, result) {
  state.request = request;
  state.result = result;
  renderResult();
}

function renderResult() {
  const result = state.result;
  if (!result) return;
  const candidates = [...(result.candidates ?? [])].sort((a, b) => a.rank - b.rank);
  $("#candidates").replaceChildren(...candidates.map((candidate) => renderCandidate(candidate, candidates.length)));
  const notes = [t("results.model", { model: result.model }), ...(result.notes ?? [])];
  // Provenance: where to trace this generation (the audit record) and whether its text carries the watermark.
  const provenance = result.provenance ?? {};
  const trace = [];
  if (provenance.record_id !== undefined && provenance.record_id !== null) trace.push(t("results.record", { id: provenance.record_id }));
  if (provenance.watermark_key_id) trace.push(t("results.watermark", { key: provenance.watermark_key_id }));
  if (provenance.model_sha256) trace.push(t("results.modelHash", { hash: provenance.model_sha256.slice(0, 12) }));
  if (trace.length) notes.push(trace.join(" · "));
  const box = $("#run-notes");
  box.replaceChildren(el("h3", {}, t("results.notes")), el("ul", {}, ...notes.map((note) => el("li", {}, note))));
  box.hidden = false;
}

function scoreOf(candidate) {
  const value = candidate.score ?? candidate.total;
  return typeof value === "number" ? Math.round(value * 100) : null;
}

function formatMetric(value) {
  if (typeof value !== "number") return String(value);
  return Number.isInteger(value) ? String(value) : value.toFixed(Math.abs(value) >= 10 ? 1 : 2);
}

/** One finding in words: "Personal data: EMAIL · redacted", "Moderation: violence 0.62 · flagged". */
function flagLabel(flag) {
  if (typeof flag === "string") return flag;
  const kind = has(`flag.${flag.kind}`) ? t(`flag.${flag.kind}`) : flag.kind ?? "";
  const what = flag.category ?? flag.type ?? "";
  const score = typeof flag.score === "number" ? ` ${flag.score.toFixed(2)}` : "";
  const detail = flag.text ? ` “${flag.text}”` : "";
  const action = flag.action ? ` · ${has(`flag.action.${flag.action}`) ? t(`flag.action.${flag.action}`) : flag.action}` : "";
  return `${kind ? `${kind}: ` : ""}${what}${score}${detail}${action}`;
}

// How governance changes a text (content/governance.py): personal data becomes a typed placeholder such as
// <EMAIL_1> (safety/pii.py "placeholder" mode), and a blocked candidate is replaced by a notice.
const PII_PLACEHOLDER = /<([A-Z][A-Z_]*?)_\d+>/g;
const WITHHELD = /\[withheld by the content policy: [^\]]*\]/g;

/** Where the findings are in the text: located flags, redaction placeholders and the withheld notice. */
function findingSpans(text, flags) {
  const spans = [];
  for (const flag of flags ?? []) {
    if (typeof flag === "object" && Number.isInteger(flag.start) && Number.isInteger(flag.end)
      && flag.start >= 0 && flag.end <= text.length && flag.start < flag.end) {
      spans.push({ start: flag.start, end: flag.end, title: flagLabel(flag) });
    }
  }
  const redactedTypes = new Set((flags ?? []).filter((flag) => flag?.kind === "pii").map((flag) => flag.type));
  for (const match of text.matchAll(PII_PLACEHOLDER)) {
    if (redactedTypes.has(match[1])) {
      spans.push({ start: match.index, end: match.index + match[0].length, title: t("flag.redacted", { type: match[1] }) });
    }
  }
  for (const match of text.matchAll(WITHHELD)) {
    spans.push({ start: match.index, end: match.index + match[0].length, title: t("flag.withheld") });
  }
  return spans.sort((a, b) => a.start - b.start);
}

/** The candidate's text with each moderation/personal-data finding wrapped in <mark>, so findings show inline. */
function textWithFindings(text, flags) {
  const parts = [];
  let at = 0;
  for (const span of findingSpans(text, flags)) {
    if (span.start < at) continue; // overlapping findings: the first one wins the highlight
    parts.push(text.slice(at, span.start));
    parts.push(el("mark", { class: "finding", title: span.title }, text.slice(span.start, span.end)));
    at = span.end;
  }
  parts.push(text.slice(at));
  return parts;
}

function renderCandidate(candidate, count) {
  const card = newCard();
  const rank = candidate.rank;
  card.dataset.rank = String(rank);
  const badge = $(".rank-badge", card);
  badge.textContent = `#${rank}`;
  badge.setAttribute("aria-label", t("card.rank", { rank }));
  const best = $(".best-tag", card);
  best.textContent = t("card.best");
  best.hidden = rank !== 1 || count < 2;
  const score = scoreOf(candidate);
  if (score !== null) {
    const scoreBox = $(".score", card);
    scoreBox.hidden = false;
    scoreBox.setAttribute("aria-label", t("card.scoreLabel", { score }));
    scoreBox.title = t("card.score");
    $(".score-bar span", card).style.width = `${Math.max(0, Math.min(100, score))}%`;
    $(".score-value", card).textContent = String(score);
  }
  const text = state.picked === rank && candidate.editedText !== undefined ? candidate.editedText : candidate.text;
  $(".candidate-text", card).replaceChildren(...textWithFindings(text, candidate.flags));

  const badges = $(".badges", card);
  const violations = candidate.violations ?? [];
  const flags = candidate.flags ?? [];
  badges.replaceChildren(
    ...violations.map((violation) => el("li", { class: "badge warn" }, "⚠ ", String(violation))),
    ...flags.map((flag) => el("li", { class: "badge flag" }, "⚑ ", flagLabel(flag))),
  );
  if (!violations.length) badges.prepend(el("li", { class: "badge ok" }, "✓ ", t("card.meets")));
  if (state.savedRanks.has(rank)) badges.prepend(el("li", { class: "badge saved" }, "★ ", t("card.savedBadge")));
  badges.hidden = false;

  const actions = $(".candidate-actions", card);
  actions.hidden = false;
  const scorecardButton = $("[data-action='scorecard']", actions);
  scorecardButton.textContent = t("card.scorecard");
  const scorecard = $(".scorecard", card);
  scorecard.id = `scorecard-${rank}`;
  scorecardButton.setAttribute("aria-controls", scorecard.id);
  scorecard.replaceChildren(...renderScorecard(candidate));
  const openCard = rank === 1;
  scorecard.hidden = !openCard;
  scorecardButton.setAttribute("aria-expanded", String(openCard));
  scorecardButton.addEventListener("click", () => {
    scorecard.hidden = !scorecard.hidden;
    scorecardButton.setAttribute("aria-expanded", String(!scorecard.hidden));
  });

  const explain = $("[data-action='explain']", actions);
  explain.textContent = t("card.explain");
  const heatmap = $(".heatmap", card);
  heatmap.id = `heatmap-${rank}`;
  explain.setAttribute("aria-controls", heatmap.id);
  explain.addEventListener("click", () => toggleExplain(candidate, explain, heatmap));

  const copy = $("[data-action='copy']", actions);
  copy.textContent = t("card.copy");
  copy.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(currentText(card, candidate));
      toast(t("card.copied"));
    } catch (error) {
      toast(error.message);
    }
  });

  const pick = $("[data-action='pick']", actions);
  pick.textContent = t("card.pick");
  pick.addEventListener("click", () => pickCandidate(rank));
  pick.hidden = state.picked === rank;
  if (state.picked !== null) {
    card.classList.toggle("picked", state.picked === rank);
    card.classList.toggle("dimmed", state.picked !== rank);
    if (state.picked === rank) openEditor(card, candidate);
  }
  return card;
}

function renderScorecard(candidate) {
  const scores = candidate.scores ?? {};
  const weights = candidate.weights ?? {};
  const names = Object.keys(scores).sort((a, b) => (weights[b] ?? 0) - (weights[a] ?? 0));
  const table = el("table", { class: "scorecard-table" },
    el("thead", {}, el("tr", {},
      el("th", { scope: "col" }, t("card.metric")),
      el("th", { scope: "col" }, t("card.value")),
      el("th", { scope: "col" }, t("card.weight")))),
    el("tbody", {}, ...names.map((name) => el("tr", {},
      el("th", { scope: "row" },
        has(`metric.${name}`) ? t(`metric.${name}`) : name, " ",
        el("span", { class: "muted small" }, `(${name}, ${t(LOWER_IS_BETTER.has(name) ? "card.better.lower" : "card.better.higher")})`)),
      el("td", {}, formatMetric(scores[name])),
      el("td", {}, weights[name] === undefined ? "—" : formatMetric(weights[name]))))));
  const parts = [table];
  if (candidate.violations?.length) {
    parts.push(el("h4", {}, t("card.violations")), el("ul", { class: "plain" }, ...candidate.violations.map((v) => el("li", {}, String(v)))));
  }
  parts.push(el("h4", {}, t("card.flags")));
  parts.push(candidate.flags?.length
    ? el("ul", { class: "plain" }, ...candidate.flags.map((flag) => el("li", {}, flagLabel(flag))))
    : el("p", { class: "muted" }, t("card.noFlags")));
  if (candidate.explanation) parts.push(el("p", { class: "explanation" }, candidate.explanation));
  return parts;
}

// ====================================================================== explain

function toggleExplain(candidate, button, heatmap) {
  const open = button.getAttribute("aria-pressed") === "true";
  button.setAttribute("aria-pressed", String(!open));
  heatmap.hidden = open;
  if (open || heatmap.dataset.loaded) return;
  heatmap.dataset.loaded = "1";
  // The tokens are what the model wrote before governance redacted or withheld the text: showing them would
  // put back exactly what was taken out.
  if ((candidate.flags ?? []).some((flag) => flag?.action === "redact" || flag?.action === "block")) {
    heatmap.replaceChildren(el("p", { class: "muted" }, t("card.explain.redacted")));
    return;
  }
  // The studio asks /v1/content for logprobs with every generation, so they come with the candidate.
  heatmap.replaceChildren(...renderHeatmap(normalizeLogprobs(candidate.logprobs), state.result?.request?.attributes));
}

// ====================================================================== pick → edit → save to the library

function currentText(card, candidate) {
  const editor = $(".candidate-editor textarea", card);
  return editor && !$(".candidate-editor", card).hidden ? editor.value : candidate.text;
}

function pickCandidate(rank) {
  state.picked = rank;
  renderResult();
  const card = $(`.candidate[data-rank='${rank}']`);
  $(".candidate-editor textarea", card)?.focus();
}

function unpick() {
  state.picked = null;
  renderResult();
}

function defaultTitle(request) {
  const attributes = typeof request.attributes === "object" ? request.attributes : null;
  const subject = attributes ? (attributes.name ?? Object.values(attributes)[0]) : null;
  const task = taskLabel(request.task);
  return subject ? `${task} · ${subject}` : t("card.untitled", { task });
}

function openEditor(card, candidate) {
  $(".candidate-text", card).hidden = true;
  const editorBox = $(".candidate-editor", card);
  editorBox.hidden = false;
  const textarea = $("textarea", editorBox);
  textarea.id = `edit-${candidate.rank}`;
  $("label", editorBox).htmlFor = textarea.id;
  $("label", editorBox).textContent = t("card.edit");
  textarea.value = candidate.editedText ?? candidate.text;
  textarea.addEventListener("input", () => { candidate.editedText = textarea.value; });

  const form = $(".save-form", card);
  form.hidden = false;
  const [titleLabel, tagsLabel] = $$("label", form);
  const title = $("input[name='title']", form);
  title.id = `save-title-${candidate.rank}`;
  titleLabel.htmlFor = title.id;
  titleLabel.textContent = t("card.title");
  title.placeholder = t("card.title.placeholder");
  title.value = candidate.saveTitle ?? defaultTitle(state.request);
  title.addEventListener("input", () => { candidate.saveTitle = title.value; });
  const tagsInput = $("input[name='tags']", form);
  tagsInput.id = `save-tags-${candidate.rank}`;
  tagsLabel.htmlFor = tagsInput.id;
  tagsLabel.textContent = t("card.tags");
  tagsInput.placeholder = t("card.tags.placeholder");
  const tags = new ChipInput($(".chip-input", form), { onChange: (terms) => { candidate.saveTags = [...terms]; } });
  tags.set(candidate.saveTags ?? []);
  const submit = $("button[type='submit']", form);
  submit.textContent = t("card.save");
  const cancel = $("[data-action='unpick']", form);
  cancel.textContent = t("cancel");
  cancel.addEventListener("click", unpick);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    candidate.saveTags = tags.values();
    await saveCandidate(candidate, { title: title.value.trim() || defaultTitle(state.request), text: textarea.value, tags: candidate.saveTags }, submit);
  });
}

async function saveCandidate(candidate, { title, text, tags }, button) {
  hideError();
  button.disabled = true;
  try {
    const item = await api.post("/v1/library", {
      content_id: state.result.id ?? null,
      task: state.request.task,
      title,
      text,
      tags,
      language: state.result.request?.language ?? state.request.language ?? "en",
    });
    state.savedRanks.add(candidate.rank);
    candidate.text = item.text ?? text;
    delete candidate.editedText;
    state.picked = null;
    state.library.loaded = false;
    renderResult();
    toast(t("card.saved", { title: item.title ?? title }));
  } catch (error) {
    showError(error);
  } finally {
    button.disabled = false;
  }
}

// ====================================================================== history of this session

function loadHistory() {
  try {
    return JSON.parse(sessionStorage.getItem(STORAGE.history) || "[]");
  } catch {
    return [];
  }
}

function remember(request, result) {
  state.history.unshift({ at: Date.now(), request, result });
  state.history.length = Math.min(state.history.length, HISTORY_LIMIT);
  try {
    sessionStorage.setItem(STORAGE.history, JSON.stringify(state.history));
  } catch {
    // Storage full: the history still lives in memory for this page.
  }
  renderHistory();
}

function factsSummary(attributes) {
  if (typeof attributes === "string") return attributes;
  return Object.entries(attributes ?? {}).map(([key, value]) => `${key}: ${value}`).join(" · ");
}

function renderHistory() {
  const list = $("#history-list");
  if (!state.history.length) {
    list.replaceChildren(el("li", { class: "empty-line muted" }, t("history.empty")));
    return;
  }
  list.replaceChildren(...state.history.map((entry, i) => {
    const best = [...(entry.result.candidates ?? [])].sort((a, b) => a.rank - b.rank)[0];
    const score = best ? scoreOf(best) : null;
    return el("li", { class: "history-item" },
      el("div", { class: "history-meta" },
        el("span", { class: "pill" }, taskLabel(entry.request.task)),
        el("span", { class: "muted" }, formatTime(entry.at)),
        el("span", { class: "muted" }, t("history.candidates", { n: entry.result.candidates?.length ?? 0 })),
        score !== null ? el("span", { class: "muted" }, `${t("card.score")} ${score}`) : null),
      el("p", { class: "history-facts" }, factsSummary(entry.request.attributes)),
      el("p", { class: "history-text" }, entry.result.text ?? best?.text ?? ""),
      el("button", { type: "button", class: "button ghost small", onclick: () => openHistory(i) }, t("history.open")));
  }));
}

function openHistory(index) {
  const entry = state.history[index];
  writeRequest(entry.request);
  state.picked = null;
  state.savedRanks = new Set();
  showResult(entry.request, structuredClone(entry.result));
  $("#run-status").textContent = formatTime(entry.at);
  showView("create");
}

// ====================================================================== views, language, API key

function showView(name) {
  for (const view of ["create", "library", "history"]) $(`#view-${view}`).hidden = view !== name;
  for (const button of $$(".nav-button")) {
    if (button.dataset.view === name) button.setAttribute("aria-current", "page");
    else button.removeAttribute("aria-current");
  }
  if (location.hash !== `#${name}`) history.replaceState(null, "", `#${name}`);
  if (name === "library" && !state.library.loaded) loadLibrary();
  if (name === "history") renderHistory();
}

function applyLanguage(code) {
  setLanguage(code);
  localStorage.setItem(STORAGE.uiLanguage, language());
  document.documentElement.lang = language() === "zh" ? "zh-CN" : "en";
  document.title = t("app.title");
  translateTree(document.body);
  for (const button of $$("[data-ui-language]")) button.setAttribute("aria-pressed", String(button.dataset.uiLanguage === language()));
  renderKeyButton();
  renderTasks();
  renderTones();
  renderTemperature();
  labelFactRows();
  for (const chip of Object.values(chips)) chip.render();
  const model = $("#model").options[0];
  if (model) model.textContent = t("brief.model.default");
  if (state.result && !state.run) renderResult();
  if (!state.result && !state.run && $("#results-empty")) translateTree($("#results-empty"));
  translateLibrary();
  renderHistory();
  $("#key-toggle").textContent = t($("#api-key").type === "password" ? "key.show" : "key.hide");
}

function renderKeyButton() {
  $("#key-button").textContent = t(state.apiKey ? "key.button.set" : "key.button");
}

function setupKeyDialog() {
  const dialog = $("#key-dialog");
  $("#key-button").addEventListener("click", () => {
    $("#api-key").value = state.apiKey;
    dialog.showModal();
    $("#api-key").focus();
  });
  $("#key-toggle").addEventListener("click", () => {
    const input = $("#api-key");
    input.type = input.type === "password" ? "text" : "password";
    $("#key-toggle").textContent = t(input.type === "password" ? "key.show" : "key.hide");
  });
  $("#key-form").addEventListener("submit", () => {
    state.apiKey = $("#api-key").value.trim();
    if (state.apiKey) localStorage.setItem(STORAGE.key, state.apiKey);
    else localStorage.removeItem(STORAGE.key);
    renderKeyButton();
    toast(t(state.apiKey ? "key.saved" : "key.cleared"));
    refreshServerData();
  });
  $("#key-clear").addEventListener("click", () => {
    state.apiKey = "";
    localStorage.removeItem(STORAGE.key);
    $("#api-key").value = "";
    renderKeyButton();
    dialog.close();
    toast(t("key.cleared"));
  });
  for (const button of $$("[data-close]")) button.addEventListener("click", () => button.closest("dialog").close());
}

function refreshServerData() {
  loadTasks();
  loadModels();
  state.library.loaded = false;
  if (!$("#view-library").hidden) loadLibrary();
}

// ====================================================================== wiring

const chips = {};

function setup() {
  emptyState = $("#results-empty").cloneNode(true);
  state.history = loadHistory();
  chips.keywords = new ChipInput($("[data-chips='keywords']"));
  chips.forbidden = new ChipInput($("[data-chips='forbidden_words']"));

  for (const button of $$(".nav-button")) button.addEventListener("click", () => showView(button.dataset.view));
  for (const button of $$("[data-ui-language]")) button.addEventListener("click", () => applyLanguage(button.dataset.uiLanguage));
  window.addEventListener("hashchange", () => {
    const name = location.hash.slice(1);
    if (["create", "library", "history"].includes(name)) showView(name);
  });

  // Facts
  addFactRow();
  $("#fact-add").addEventListener("click", () => addFactRow("", "", { focus: true }));
  $("#fact-example").addEventListener("click", fillExample);
  $("#fact-rows").addEventListener("click", (event) => {
    const remove = event.target.closest("[data-remove]");
    if (!remove) return;
    const row = remove.closest(".fact-row");
    const next = row.nextElementSibling ?? row.previousElementSibling;
    row.remove();
    if (!$("#fact-rows .fact-row")) addFactRow();
    labelFactRows();
    $(".fact-key", next && next.isConnected ? next : $("#fact-rows .fact-row")).focus();
  });
  $("#fact-rows").addEventListener("keydown", (event) => {
    // Enter in a fact moves on to the next one (a new row after the last) instead of submitting the brief.
    if (event.key !== "Enter" || !event.target.matches("input")) return;
    event.preventDefault();
    const row = event.target.closest(".fact-row");
    if (event.target.classList.contains("fact-key")) $(".fact-value", row).focus();
    else if (row.nextElementSibling) $(".fact-key", row.nextElementSibling).focus();
    else addFactRow("", "", { focus: true });
  });
  for (const button of $$("[data-facts-mode]")) button.addEventListener("click", () => setFactsMode(button.dataset.factsMode));

  // Counts and advanced options
  for (const button of $$("[data-step]")) {
    button.addEventListener("click", () => {
      const input = $("#n");
      const next = (Number(input.value) || 1) + Number(button.dataset.step);
      input.value = String(Math.max(Number(input.min), Math.min(Number(input.max), next)));
    });
  }
  $("#temperature").addEventListener("input", () => {
    state.temperatureTouched = true;
    renderTemperature();
  });
  $("#brief").addEventListener("input", (event) => {
    if (event.target.getAttribute("aria-invalid") === "true") event.target.removeAttribute("aria-invalid");
  });

  $("#brief").addEventListener("submit", generate);
  $("#stop").addEventListener("click", () => state.run?.controller.abort());

  setupLibrary();

  // History
  $("#history-clear").addEventListener("click", () => {
    state.history = [];
    sessionStorage.removeItem(STORAGE.history);
    renderHistory();
  });

  setupKeyDialog();

  const saved = localStorage.getItem(STORAGE.uiLanguage);
  applyLanguage(saved ?? (navigator.language?.toLowerCase().startsWith("zh") ? "zh" : "en"));
  const initial = location.hash.slice(1);
  showView(["create", "library", "history"].includes(initial) ? initial : "create");
  refreshServerData();
  document.body.dataset.ready = "true";
}

setup();
