// The agent console: the handoff queue, a ticket's summary and transcript beside the customer's profile, and a
// reply box. A reply is added to the customer's session, so their chat widget shows it on its next poll.
// This view owns its strings (added to the studio's tables here) and its markup (built inside #view-support).

import { api, errorText } from "./context.js";
import { $, $$, el, formatTime, toast } from "./dom.js";
import { STRINGS, t, translateTree } from "./i18n.js";

Object.assign(STRINGS.en, {
  "nav.support": "Support",
  "support.title": "Support queue",
  "support.refresh": "Refresh",
  "support.filter": "Show",
  "support.filter.open": "Waiting for an agent",
  "support.filter.answered": "Answered",
  "support.filter.closed": "Closed",
  "support.empty": "No tickets here. Conversations the assistant hands over appear in this list.",
  "support.pick": "Pick a ticket to see its conversation.",
  "support.summary": "Summary",
  "support.customer": "Customer",
  "support.transcript": "Conversation",
  "support.reply": "Your reply to the customer",
  "support.send": "Send reply",
  "support.sendClose": "Send and close",
  "support.close": "Close ticket",
  "support.sent": "Reply sent; the customer sees it in the chat.",
  "support.closed": "Ticket closed; the assistant answers this customer again.",
  "support.role.customer": "Customer",
  "support.role.assistant": "Assistant",
  "support.role.agent": "Agent",
  "support.plan": "Plan",
  "support.orders": "Orders",
  "support.history": "Tickets",
  "support.none": "none",
});
Object.assign(STRINGS.zh, {
  "nav.support": "客服",
  "support.title": "客服队列",
  "support.refresh": "刷新",
  "support.filter": "显示",
  "support.filter.open": "等待人工",
  "support.filter.answered": "已回复",
  "support.filter.closed": "已关闭",
  "support.empty": "这里没有工单。智能客服转人工的对话会出现在此列表。",
  "support.pick": "选择一个工单查看对话。",
  "support.summary": "摘要",
  "support.customer": "客户",
  "support.transcript": "对话记录",
  "support.reply": "回复客户",
  "support.send": "发送回复",
  "support.sendClose": "发送并关闭",
  "support.close": "关闭工单",
  "support.sent": "已发送，客户会在聊天窗口看到。",
  "support.closed": "工单已关闭，智能客服将继续接待该客户。",
  "support.role.customer": "客户",
  "support.role.assistant": "智能客服",
  "support.role.agent": "人工客服",
  "support.plan": "套餐",
  "support.orders": "订单",
  "support.history": "工单",
  "support.none": "无",
});

const REFRESH_MS = 5000;
const view = { status: "open", tickets: [], selected: null, shown: null, timer: null };

function section() {
  return $("#view-support");
}

function build() {
  section().append(
    el("div", { class: "support-head" },
      el("h1", { class: "panel-title", id: "support-title", "data-i18n": "support.title" }),
      el("label", { class: "support-filter" },
        el("span", { "data-i18n": "support.filter" }), " ",
        el("select", { id: "support-status" },
          ...["open", "answered", "closed"].map((s) => el("option", { value: s, "data-i18n": `support.filter.${s}` })))),
      el("button", { type: "button", class: "button ghost small", id: "support-refresh", "data-i18n": "support.refresh" })),
    el("div", { class: "support-layout" },
      el("ul", { id: "support-tickets", class: "support-tickets", "aria-labelledby": "support-title" }),
      el("div", { id: "support-detail", class: "support-detail" },
        el("p", { class: "muted", "data-i18n": "support.pick" }))),
  );
  translateTree(section());
  $("#support-status").addEventListener("change", (event) => {
    view.status = event.target.value;
    view.selected = null;
    load();
  });
  $("#support-refresh").addEventListener("click", load);
}

async function load() {
  try {
    const page = await api.get(`/v1/support/tickets?status=${view.status}`);
    view.tickets = page.data;
  } catch (error) {
    view.tickets = [];
    $("#support-tickets").replaceChildren(el("li", { class: "error" }, errorText(error)));
    return;
  }
  renderList();
  const ticket = view.tickets.find((item) => item.id === view.selected);
  // Redraw the open ticket only when it changed (a new customer message), keeping what the agent is typing.
  if (ticket && ticket.updated_at !== view.shown) {
    const draft = $("#support-reply") ? $("#support-reply").value : "";
    await renderDetail(ticket);
    if ($("#support-reply")) $("#support-reply").value = draft;
  }
}

function renderList() {
  const list = $("#support-tickets");
  if (!view.tickets.length) {
    list.replaceChildren(el("li", { class: "muted support-empty" }, t("support.empty")));
    return;
  }
  list.replaceChildren(...view.tickets.map((ticket) => el("li", {},
    el("button", {
      type: "button", class: `support-ticket${ticket.id === view.selected ? " selected" : ""}`,
      dataset: { ticket: ticket.id }, "aria-current": ticket.id === view.selected ? "true" : null,
      onclick: () => { view.selected = ticket.id; renderList(); renderDetail(ticket); },
    },
    el("strong", {}, `${ticket.id} · ${ticket.customer_name}`),
    el("span", { class: "support-subject" }, ticket.subject),
    el("span", { class: "muted" }, formatTime(ticket.updated_at))))));
}

async function renderDetail(ticket) {
  view.shown = ticket.updated_at;
  const detail = $("#support-detail");
  const transcript = el("ol", { class: "support-transcript" }, ...ticket.transcript.map((turn) =>
    el("li", { class: `turn ${turn.role}`, dataset: { role: turn.role } },
      el("span", { class: "who" }, t(`support.role.${turn.role}`)), el("span", { class: "text" }, turn.text))));
  const reply = el("textarea", { id: "support-reply", rows: 3, "aria-labelledby": "support-reply-label" });
  const profile = el("dl", { class: "support-profile" });
  detail.replaceChildren(
    el("h2", {}, `${ticket.id} · ${ticket.subject}`),
    el("h3", { "data-i18n": "support.summary" }), el("p", { class: "support-summary" }, ticket.summary),
    el("h3", { "data-i18n": "support.customer" }), profile,
    el("h3", { "data-i18n": "support.transcript" }), transcript,
    ticket.status === "closed" || !ticket.session_id ? null : el("form", { class: "support-reply-form", onsubmit: (e) => e.preventDefault() },
      el("label", { id: "support-reply-label", for: "support-reply", "data-i18n": "support.reply" }), reply,
      el("div", { class: "inline-actions" },
        el("button", { type: "button", class: "button", id: "support-send", "data-i18n": "support.send",
                       onclick: () => send(ticket, reply, false) }),
        el("button", { type: "button", class: "button ghost", id: "support-send-close", "data-i18n": "support.sendClose",
                       onclick: () => send(ticket, reply, true) }))),
  );
  translateTree(detail);
  try {
    const customer = await api.get(`/v1/support/customers/${encodeURIComponent(ticket.customer_id)}`);
    const orders = customer.orders.map((o) => `${o.id} ${o.item} (${o.status})`).join("; ") || t("support.none");
    const tickets = customer.tickets.map((o) => `${o.id} ${o.subject} (${o.status})`).join("; ") || t("support.none");
    profile.replaceChildren(
      el("dt", {}, t("support.customer")), el("dd", {}, `${customer.name} (${customer.id})`),
      el("dt", {}, t("support.plan")), el("dd", {}, customer.plan),
      el("dt", {}, t("support.orders")), el("dd", {}, orders),
      el("dt", {}, t("support.history")), el("dd", {}, tickets));
  } catch (error) {
    profile.replaceChildren(el("dd", { class: "error" }, errorText(error)));
  }
}

async function send(ticket, box, close) {
  const text = box.value.trim();
  if (!text) {
    box.focus();
    return;
  }
  try {
    await api.post(`/v1/support/tickets/${encodeURIComponent(ticket.id)}/reply`, { text, close });
    box.value = "";
    toast(t(close ? "support.closed" : "support.sent"));
    await load();
  } catch (error) {
    toast(errorText(error));
  }
}

function show(visible) {
  section().hidden = !visible;
  clearInterval(view.timer);
  if (visible) {
    load();
    view.timer = setInterval(load, REFRESH_MS);
  }
}

function setup() {
  if (!section()) return;
  document.head.append(el("link", { rel: "stylesheet", href: "support-console.css" }));
  build();
  // The studio's own views are switched by app.js; this one follows the same buttons.
  for (const button of $$(".nav-button")) button.addEventListener("click", () => show(button.dataset.view === "support"));
  for (const button of $$("[data-ui-language]")) button.addEventListener("click", () => {
    translateTree(section());
    if (view.tickets.length) renderList();
  });
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", setup);
else setup();
