// What the parts of the studio share: its state, the API client and the wording of tasks and errors.

import { ApiError, createApi } from "./api.js";
import { $ } from "./dom.js";
import { has, t } from "./i18n.js";

export const STORAGE = { key: "aigc.apiKey", uiLanguage: "aigc.uiLanguage", history: "aigc.history" };

export const state = {
  apiKey: localStorage.getItem(STORAGE.key) || "",
  tasks: [],
  models: [],
  factsMode: "rows",
  temperatureTouched: false,
  run: null, // {controller, cards: Map<candidate index, card>, started}
  result: null, // the last content object shown in the candidates panel
  request: null, // the request that produced it
  picked: null, // rank of the picked candidate
  savedRanks: new Set(),
  history: [],
  library: { items: [], total: 0, tags: new Set(), loaded: false },
  libraryItem: null,
};

export const api = createApi(() => state.apiKey);

/** A task's name in the interface language (the registry name when the table has none). */
export function taskLabel(name) {
  return has(`task.${name}.name`) ? t(`task.${name}.name`) : name;
}

/** A task's one-line description in the interface language, else the server's. */
export function taskDescription(task) {
  return has(`task.${task.name}.desc`) ? t(`task.${task.name}.desc`) : task.description || "";
}

/** The line to show for a failure: the server's own message, or what to do when there was no answer. */
export function errorText(error) {
  if (error instanceof ApiError) {
    if (error.status === 0) return t("error.network");
    if (error.code === "stream_incomplete") return t("error.stream");
    if (error.status === 401) return `${error.message} ${t("error.auth")}`;
    return error.message;
  }
  return error.message || String(error);
}

/** Show a failure in an error box that holds one paragraph. */
export function showBoxError(box, error) {
  $("p", box).textContent = errorText(error);
  box.hidden = false;
}
