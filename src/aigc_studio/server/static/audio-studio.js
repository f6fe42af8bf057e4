// The Audio view: compose jingles with the music model (POST /v1/audio/jingles), listen in the browser,
// compose again with the next seed, download the audio and MIDI, turn a jingle and ad copy into a spoken ad
// (POST /v1/audio/ads), and keep either in the content library (POST /v1/audio/library).
//
// Like gallery.js it loads before app.js, adds its strings to the shared dictionary, and shows or hides its
// own section when a navigation button is pressed.

import { api, errorText } from "./context.js";
import { $, $$, el, toast } from "./dom.js";
import { STRINGS, t } from "./i18n.js";

const AUDIO_STRINGS = {
  en: {
    "nav.audio": "Audio",
    "audio.title": "Jingles and audio ads",
    "audio.help": "Short original tunes from the music model: every bar whole, ending on the key note, checked against the training tunes for copying. Pick one and add a voice-over of your ad copy.",
    "audio.model": "Music model",
    "audio.key": "Key",
    "audio.mode": "Mode",
    "audio.meter": "Meter",
    "audio.bars": "Bars",
    "audio.tempo": "Tempo (beats a minute)",
    "audio.instrument": "Instrument",
    "audio.n": "Jingles",
    "audio.seed": "Seed",
    "audio.compose": "Compose",
    "audio.composing": "Composing…",
    "audio.again": "Compose again (next seed)",
    "audio.empty": "No jingles yet: choose a key and meter, then compose.",
    "audio.jingle": "Jingle {index} · seed {seed} · {seconds} s",
    "audio.download": "Download audio",
    "audio.midi": "Download MIDI",
    "audio.save": "Save",
    "audio.saved": "Saved to the library.",
    "audio.savedButton": "Saved ✓",
    "audio.useForAd": "Use for an ad",
    "audio.ad.title": "Audio ad",
    "audio.ad.copy": "Ad copy (or a library item id)",
    "audio.ad.language": "Voice language",
    "audio.ad.make": "Make the ad",
    "audio.ad.making": "Mixing…",
    "audio.ad.needJingle": "Pick a jingle with “Use for an ad” first.",
    "audio.ad.result": "Ad · {seconds} s · {lufs} LUFS",
  },
  zh: {
    "nav.audio": "音频",
    "audio.title": "广告歌与音频广告",
    "audio.help": "由音乐模型创作的原创短曲：每小节完整、结束在主音上，并与训练曲目比对以防抄袭。选一首，再为广告文案配上旁白。",
    "audio.model": "音乐模型",
    "audio.key": "调",
    "audio.mode": "调式",
    "audio.meter": "拍号",
    "audio.bars": "小节数",
    "audio.tempo": "速度（每分钟拍数）",
    "audio.instrument": "乐器",
    "audio.n": "数量",
    "audio.seed": "种子",
    "audio.compose": "作曲",
    "audio.composing": "作曲中…",
    "audio.again": "再作一组（下一个种子）",
    "audio.empty": "还没有广告歌：选择调和拍号后点击作曲。",
    "audio.jingle": "广告歌 {index} · 种子 {seed} · {seconds} 秒",
    "audio.download": "下载音频",
    "audio.midi": "下载 MIDI",
    "audio.save": "保存",
    "audio.saved": "已保存到内容库。",
    "audio.savedButton": "已保存 ✓",
    "audio.useForAd": "用于广告",
    "audio.ad.title": "音频广告",
    "audio.ad.copy": "广告文案（或内容库条目 ID）",
    "audio.ad.language": "旁白语言",
    "audio.ad.make": "生成广告",
    "audio.ad.making": "混音中…",
    "audio.ad.needJingle": "请先用“用于广告”选择一首广告歌。",
    "audio.ad.result": "广告 · {seconds} 秒 · {lufs} LUFS",
  },
};
for (const [code, strings] of Object.entries(AUDIO_STRINGS)) Object.assign(STRINGS[code], strings);

const KEYS = ["C", "G", "D", "A", "E", "F", "Bb", "Eb"];
const METERS = ["2/4", "3/4", "4/4", "6/8", "2/2", "9/8"];
const INSTRUMENTS = ["acoustic grand piano", "fiddle", "flute", "marimba", "acoustic guitar (nylon)", "trumpet", "music box", "vibraphone"];
const initialView = location.hash.slice(1); // app.js replaces the hash with its own view when it starts

const audio = { jingles: [], adJingle: null, running: false };

function field(id, labelKey, control) {
  return el("div", { class: "field" }, el("label", { for: id, "data-i18n": labelKey }, t(labelKey)), control);
}

function select(id, values, chosen) {
  return el("select", { id }, ...values.map((value) => el("option", value === chosen ? { value, selected: true } : { value }, value)));
}

function build(section) {
  document.head.append(el("link", { rel: "stylesheet", href: "audio-studio.css" }));
  section.append(
    el("h1", { id: "audio-title", class: "panel-title", "data-i18n": "audio.title" }, t("audio.title")),
    el("p", { class: "hint", "data-i18n": "audio.help" }, t("audio.help")),
    el("form", { id: "audio-form", class: "audio-form", novalidate: true },
      field("audio-model", "audio.model", el("input", { id: "audio-model", type: "text", value: "jingle" })),
      field("audio-key", "audio.key", select("audio-key", KEYS, "D")),
      field("audio-mode", "audio.mode", select("audio-mode", ["major", "minor"], "major")),
      field("audio-meter", "audio.meter", select("audio-meter", METERS, "6/8")),
      field("audio-bars", "audio.bars", el("input", { id: "audio-bars", type: "number", min: "1", max: "64", value: "8" })),
      field("audio-tempo", "audio.tempo", el("input", { id: "audio-tempo", type: "number", min: "20", max: "300", value: "120" })),
      field("audio-instrument", "audio.instrument", select("audio-instrument", INSTRUMENTS, "fiddle")),
      field("audio-n", "audio.n", el("input", { id: "audio-n", type: "number", min: "1", max: "4", value: "2" })),
      field("audio-seed", "audio.seed", el("input", { id: "audio-seed", type: "number", min: "0", step: "1", value: "0" })),
      el("div", { class: "audio-actions" },
        el("button", { type: "submit", class: "button primary", id: "audio-compose", "data-i18n": "audio.compose" }, t("audio.compose")),
        el("button", { type: "button", class: "button ghost", id: "audio-again", "data-i18n": "audio.again" }, t("audio.again")))),
    el("div", { id: "audio-error", class: "error-box", role: "alert", hidden: true }, el("p")),
    el("ul", { id: "audio-results", class: "audio-results", "aria-live": "polite" },
      el("li", { class: "hint", "data-i18n": "audio.empty" }, t("audio.empty"))),
    el("h2", { class: "panel-title", "data-i18n": "audio.ad.title" }, t("audio.ad.title")),
    el("form", { id: "audio-ad-form", class: "audio-form", novalidate: true },
      el("div", { class: "field audio-wide" }, el("label", { for: "audio-ad-copy", "data-i18n": "audio.ad.copy" }, t("audio.ad.copy")),
        el("textarea", { id: "audio-ad-copy", rows: "3" })),
      field("audio-ad-language", "audio.ad.language", select("audio-ad-language", ["en", "zh"], "en")),
      el("div", { class: "audio-actions" },
        el("button", { type: "submit", class: "button primary", id: "audio-ad-make", "data-i18n": "audio.ad.make" }, t("audio.ad.make")))),
    el("div", { id: "audio-ad-result" }),
  );
  $("#audio-form").addEventListener("submit", (event) => { event.preventDefault(); compose(); });
  $("#audio-again").addEventListener("click", () => { $("#audio-seed").value = String(Number($("#audio-seed").value || 0) + 1); compose(); });
  $("#audio-ad-form").addEventListener("submit", makeAd);
}

function showError(error) {
  const box = $("#audio-error");
  box.querySelector("p").textContent = error ? errorText(error) : "";
  box.hidden = !error;
}

function composeRequest() {
  return {
    model: $("#audio-model").value.trim() || "jingle", key: $("#audio-key").value, mode: $("#audio-mode").value,
    meter: $("#audio-meter").value, bars: Number($("#audio-bars").value), tempo: Number($("#audio-tempo").value),
    instrument: $("#audio-instrument").value, n: Number($("#audio-n").value), seed: Number($("#audio-seed").value || 0),
  };
}

async function compose() {
  if (audio.running) return;
  audio.running = true;
  showError(null);
  const button = $("#audio-compose");
  button.disabled = true;
  button.textContent = t("audio.composing");
  try {
    const body = await api.post("/v1/audio/jingles", composeRequest());
    audio.jingles = body.data;
    renderJingles();
  } catch (error) {
    showError(error);
  } finally {
    audio.running = false;
    button.disabled = false;
    button.textContent = t("audio.compose");
  }
}

const MIME = { wav: "audio/wav", mp3: "audio/mpeg", ogg: "audio/ogg" };

function audioSource(item) {
  return `data:${MIME[item.format]};base64,${item.b64_audio}`;
}

function saveButton(item, tags) {
  const button = el("button", { type: "button", class: "button ghost small" }, t(item.saved ? "audio.savedButton" : "audio.save"));
  button.disabled = Boolean(item.saved);
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      await api.post("/v1/audio/library", { id: item.id, tags });
      item.saved = true;
      button.textContent = t("audio.savedButton");
      toast(t("audio.saved"));
    } catch (error) {
      button.disabled = false;
      showError(error);
    }
  });
  return button;
}

function renderJingles() {
  const cards = audio.jingles.map((item, index) => {
    const use = el("button", { type: "button", class: "button ghost small" }, t("audio.useForAd"));
    use.addEventListener("click", () => {
      audio.adJingle = item;
      for (const card of $$(".audio-card")) card.classList.toggle("chosen", card.dataset.id === item.id);
    });
    const name = `jingle-seed${item.provenance.seed}-${index + 1}`;
    return el("li", { class: "audio-card", dataset: { id: item.id } },
      el("p", { class: "audio-card-title" }, t("audio.jingle", { index: index + 1, seed: item.provenance.seed, seconds: item.seconds })),
      el("audio", { controls: true, preload: "auto", src: audioSource(item) }),
      el("div", { class: "audio-card-actions" },
        el("a", { class: "button ghost small", href: audioSource(item), download: `${name}.${item.format}` }, t("audio.download")),
        el("a", { class: "button ghost small", href: `data:audio/midi;base64,${item.b64_midi}`, download: `${name}.mid` }, t("audio.midi")),
        saveButton(item, ["jingle"]), use));
  });
  $("#audio-results").replaceChildren(...cards);
}

async function makeAd(event) {
  event.preventDefault();
  if (!audio.adJingle) {
    showError(new Error(t("audio.ad.needJingle")));
    return;
  }
  showError(null);
  const button = $("#audio-ad-make");
  button.disabled = true;
  button.textContent = t("audio.ad.making");
  try {
    const item = await api.post("/v1/audio/ads", {
      copy: $("#audio-ad-copy").value, jingle: audio.adJingle.id, language: $("#audio-ad-language").value,
    });
    $("#audio-ad-result").replaceChildren(el("div", { class: "audio-card" },
      el("p", { class: "audio-card-title" }, t("audio.ad.result", { seconds: item.seconds, lufs: item.provenance.parameters.lufs })),
      el("audio", { controls: true, preload: "auto", src: audioSource(item) }),
      el("div", { class: "audio-card-actions" },
        el("a", { class: "button ghost small", href: audioSource(item), download: `audio-ad.${item.format}` }, t("audio.download")),
        saveButton(item, ["audio-ad"]))));
  } catch (error) {
    showError(error);
  } finally {
    button.disabled = false;
    button.textContent = t("audio.ad.make");
  }
}

function show(visible) {
  const section = $("#view-audio");
  if (visible && !section.childElementCount) build(section);
  section.hidden = !visible;
}

function setup() {
  if (!$("#view-audio")) return;
  for (const button of $$(".nav-button")) button.addEventListener("click", () => show(button.dataset.view === "audio"));
  window.addEventListener("hashchange", () => {
    if (location.hash === "#audio") $(".nav-button[data-view='audio']").click();
  });
  for (const button of $$("[data-ui-language]")) button.addEventListener("click", () => { if (audio.jingles.length) renderJingles(); });
  if (initialView === "audio") $(".nav-button[data-view='audio']").click();
}

document.addEventListener("DOMContentLoaded", setup);
