// "Explain": a candidate's token probabilities as a heat map.

import { el } from "./dom.js";
import { t } from "./i18n.js";

function probabilityColor(probability) {
  // Calm for tokens the model was sure of, warm amber to red as it hesitated.
  const p = Math.max(0, Math.min(1, probability));
  const hue = 10 + 40 * p;
  const alpha = 0.08 + 0.62 * (1 - p);
  return `hsla(${hue}, 90%, 55%, ${alpha.toFixed(3)})`;
}

/** Placeholder → value for the request's facts (content/delexicalize.py writes slot "near" as "__near__"). */
function placeholderValues(attributes) {
  if (!attributes || typeof attributes !== "object") return {};
  return Object.fromEntries(Object.entries(attributes).map(([key, value]) => [`__${key.replace(/ /g, "_")}__`, value]));
}

/**
 * The tokens as the reader sees them. Models trained on delexicalised data write "__name__" (several tokens)
 * where the venue goes and the server puts the value back; such tokens are merged into one piece showing the
 * value, with the joint probability of the tokens that spelled the placeholder.
 */
function readableTokens(tokens, values) {
  const placeholders = Object.keys(values).sort((a, b) => b.length - a.length);
  let raw = "";
  const spans = tokens.map((token) => {
    const start = raw.length;
    raw += token.token;
    return { ...token, start, end: raw.length };
  });
  const matches = [];
  if (placeholders.length) {
    const pattern = new RegExp(placeholders.map((p) => p.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")).join("|"), "g");
    for (const match of raw.matchAll(pattern)) matches.push([match.index, match.index + match[0].length]);
  }
  const pieces = [];
  for (let i = 0; i < spans.length; i += 1) {
    const match = matches.find(([from, to]) => spans[i].start < to && spans[i].end > from);
    if (!match) {
      pieces.push({ text: spans[i].token, logprob: spans[i].logprob, top: spans[i].top, merged: null });
      continue;
    }
    let j = i;
    while (j + 1 < spans.length && spans[j + 1].start < match[1]) j += 1;
    const group = spans.slice(i, j + 1);
    const text = raw.slice(group[0].start, group.at(-1).end);
    pieces.push({
      text: text.replace(raw.slice(match[0], match[1]), values[raw.slice(match[0], match[1])]),
      logprob: group.reduce((sum, token) => sum + token.logprob, 0),
      top: [],
      merged: text,
    });
    i = j;
  }
  return pieces;
}

/**
 * The heat map of a candidate: its tokens coloured by probability, a legend and a one-line summary.
 * @param {Array|null} tokens normalised logprobs (api.js normalizeLogprobs)
 * @param {object|null} attributes the request's facts, to show placeholders as the values they stand for
 * @returns {Element[]}
 */
export function renderHeatmap(tokens, attributes) {
  const usable = readableTokens((tokens ?? []).filter((token) => typeof token.logprob === "number"), placeholderValues(attributes));
  if (!usable.length) return [el("p", { class: "muted" }, t("card.explain.none"))];
  const spans = usable.map((token) => {
    const p = Math.exp(token.logprob);
    const alternatives = token.top.filter((alt) => alt.token !== token.text).slice(0, 4)
      .map((alt) => `${JSON.stringify(alt.token)} ${(Math.exp(alt.logprob) * 100).toFixed(0)}%`).join(", ");
    const source = token.merged ? ` · ${token.merged.trim()}` : "";
    const title = `${(p * 100).toFixed(1)}%${source}${alternatives ? ` · ${t("card.explain.alternatives")}: ${alternatives}` : ""}`;
    // Special tokens (<eos>: the decision to stop) are shown as a small mark, not as text.
    const special = /^<[^<>\s]+>$/.test(token.text);
    return el("span", {
      class: special ? "token special" : "token", style: `background:${probabilityColor(p)}`, title, "data-p": p.toFixed(3),
    }, special ? "⏎" : token.text);
  });
  const mean = usable.reduce((sum, token) => sum + Math.exp(token.logprob), 0) / usable.length;
  const lowest = [...usable].sort((a, b) => a.logprob - b.logprob).slice(0, 3)
    .map((token) => `“${token.text.trim() || token.text}” ${(Math.exp(token.logprob) * 100).toFixed(0)}%`).join(", ");
  const legend = el("div", { class: "heat-legend" },
    el("span", {}, t("card.explain.legend")),
    el("span", { class: "heat-scale", "aria-hidden": "true" },
      ...[0, 0.25, 0.5, 0.75, 1].map((p) => el("span", { style: `background:${probabilityColor(p)}` }, `${p * 100}%`))));
  return [el("p", { class: "heat-text" }, ...spans), legend,
    el("p", { class: "muted small" }, t("card.explain.summary", { mean: `${(mean * 100).toFixed(0)}%`, lowest }))];
}
