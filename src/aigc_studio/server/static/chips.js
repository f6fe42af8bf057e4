// Term lists typed into a text box: keywords, forbidden words, tags.

import { $, el } from "./dom.js";
import { t } from "./i18n.js";

/** A list of terms typed into a text box: Enter or a comma ends a term, Backspace on an empty box removes one. */
export class ChipInput {
  constructor(container, { onChange = () => {} } = {}) {
    this.container = container;
    this.list = $(".chips", container);
    this.input = $("input", container);
    this.terms = [];
    this.onChange = onChange;
    this.input.addEventListener("keydown", (event) => this.keydown(event));
    this.input.addEventListener("blur", () => this.commit());
    this.input.addEventListener("paste", (event) => {
      const text = event.clipboardData?.getData("text") ?? "";
      if (!/[,，\n]/.test(text)) return;
      event.preventDefault();
      this.addMany(this.input.value + text);
      this.input.value = "";
    });
    container.addEventListener("click", (event) => { if (event.target === container) this.input.focus(); });
  }

  keydown(event) {
    if ((event.key === "Enter" || event.key === "," || event.key === "，") && this.input.value.trim()) {
      event.preventDefault();
      this.commit();
    } else if (event.key === "Enter" && event.target.closest("form.save-form")) {
      // An empty tag box must not submit the save form by accident while tags are being typed.
      event.preventDefault();
    } else if (event.key === "Backspace" && !this.input.value && this.terms.length) {
      this.remove(this.terms.length - 1);
    }
  }

  commit() {
    if (this.input.value.trim()) this.addMany(this.input.value);
    this.input.value = "";
  }

  addMany(text) {
    for (const term of text.split(/[,，\n]/)) this.add(term, { quiet: true });
    this.render();
    this.onChange(this.terms);
  }

  add(term, { quiet = false } = {}) {
    const clean = term.trim();
    if (clean && !this.terms.includes(clean)) this.terms.push(clean);
    if (!quiet) {
      this.render();
      this.onChange(this.terms);
    }
  }

  remove(index) {
    this.terms.splice(index, 1);
    this.render();
    this.onChange(this.terms);
    this.input.focus();
  }

  set(terms) {
    this.terms = [...new Set((terms || []).map((term) => String(term).trim()).filter(Boolean))];
    this.input.value = "";
    this.render();
  }

  values() {
    this.commit();
    return [...this.terms];
  }

  render() {
    this.list.replaceChildren(...this.terms.map((term, index) => el("li", { class: "chip" },
      el("span", {}, term),
      el("button", { type: "button", class: "chip-remove", "aria-label": t("chip.remove", { term }), onclick: () => this.remove(index) }, "×"))));
  }
}
