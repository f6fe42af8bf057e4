// The embeddable customer-service chat: one tag on any page gives a floating chat box.
//
//   <script src="https://support.example.com/widget.js" data-customer="C1001" data-api-key="KEY"></script>
//
// Optional attributes: data-title (the box's heading), data-open="true" (start open), data-poll-ms (how often
// agents' replies are fetched, default 3000), data-api (the server, default: where this script came from).
// Everything lives in a shadow root, so the page's CSS does not reach the box and the box's CSS does not leak
// out. The session id is kept in the page's localStorage per customer, so a reload continues the conversation.
(() => {
  "use strict";
  const script = document.currentScript;
  if (!script) return;
  const config = {
    api: (script.dataset.api || new URL(script.src, location.href).origin).replace(/\/$/, ""),
    customer: script.dataset.customer || "",
    key: script.dataset.apiKey || "",
    title: script.dataset.title || "Chat with us",
    open: script.dataset.open === "true",
    pollMs: Number(script.dataset.pollMs) || 3000,
  };
  const storageKey = `aigc.support.session.${config.customer}`;

  const STYLE = `
    :host { all: initial; }
    * { box-sizing: border-box; font-family: system-ui, -apple-system, "Segoe UI", sans-serif; }
    .launcher { position: fixed; right: 20px; bottom: 20px; z-index: 2147483000; width: 56px; height: 56px;
      border-radius: 50%; border: 0; background: #1f5fbf; color: #fff; font-size: 24px; cursor: pointer;
      box-shadow: 0 4px 14px rgba(0,0,0,.25); }
    .launcher:focus-visible, button:focus-visible, input:focus-visible { outline: 3px solid #f5b400; outline-offset: 2px; }
    .panel { position: fixed; right: 20px; bottom: 88px; z-index: 2147483000; width: min(360px, calc(100vw - 40px));
      height: min(520px, calc(100vh - 120px)); display: flex; flex-direction: column; background: #fff; color: #1b1f24;
      border-radius: 12px; box-shadow: 0 8px 30px rgba(0,0,0,.25); overflow: hidden; font-size: 14px; }
    .panel[hidden] { display: none; }
    header { display: flex; align-items: center; justify-content: space-between; padding: 10px 14px;
      background: #1f5fbf; color: #fff; font-weight: 600; }
    header button { background: none; border: 0; color: #fff; font-size: 18px; cursor: pointer; }
    .log { flex: 1; overflow-y: auto; padding: 12px; display: flex; flex-direction: column; gap: 8px; background: #f5f7fa; }
    .msg { max-width: 85%; padding: 8px 10px; border-radius: 10px; white-space: pre-wrap; line-height: 1.4; }
    .msg.customer { align-self: flex-end; background: #1f5fbf; color: #fff; }
    .msg.assistant { align-self: flex-start; background: #fff; border: 1px solid #d9dee5; }
    .msg.agent { align-self: flex-start; background: #fff5d6; border: 1px solid #f0d47a; }
    .msg.error { align-self: center; background: #fde8e8; color: #8a1c1c; font-size: 13px; }
    .who { display: block; font-size: 11px; opacity: .7; margin-bottom: 2px; }
    .sources { margin-top: 6px; font-size: 12px; color: #4a5563; }
    .note { font-size: 12px; color: #4a5563; align-self: center; }
    form { display: flex; gap: 6px; padding: 10px; border-top: 1px solid #d9dee5; background: #fff; }
    input { flex: 1; padding: 8px 10px; border: 1px solid #b8c0cc; border-radius: 8px; font-size: 14px; }
    form button { padding: 8px 12px; border: 0; border-radius: 8px; background: #1f5fbf; color: #fff; cursor: pointer; }
    form button:disabled { opacity: .6; cursor: wait; }
  `;

  const host = document.createElement("div");
  host.id = "aigc-support-widget";
  const root = host.attachShadow({ mode: "open" });
  root.innerHTML = `
    <style>${STYLE}</style>
    <button class="launcher" type="button" aria-label="Open the chat" aria-expanded="false">💬</button>
    <section class="panel" role="dialog" aria-label="${escapeAttribute(config.title)}" hidden>
      <header><span class="title"></span><button type="button" class="close" aria-label="Close the chat">×</button></header>
      <div class="log" role="log" aria-live="polite"></div>
      <form><input name="message" autocomplete="off" aria-label="Your message" placeholder="Type your question…">
        <button type="submit">Send</button></form>
    </section>`;
  const $ = (selector) => root.querySelector(selector);
  $(".title").textContent = config.title;
  const log = $(".log");
  let sessionId = localStorage.getItem(storageKey) || "";
  let lastId = 0;
  let pollTimer = null;

  function escapeAttribute(text) {
    return String(text).replace(/[&"<>]/g, (c) => ({ "&": "&amp;", '"': "&quot;", "<": "&lt;", ">": "&gt;" })[c]);
  }

  function headers(json) {
    const result = { Accept: "application/json" };
    if (json) result["Content-Type"] = "application/json";
    if (config.key) result.Authorization = `Bearer ${config.key}`;
    return result;
  }

  async function call(method, path, body) {
    let response;
    try {
      response = await fetch(config.api + path, {
        method, headers: headers(body !== undefined), body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch {
      throw new Error("The chat service cannot be reached; check your connection and try again.");
    }
    const data = await response.json().catch(() => null);
    if (!response.ok) {
      const error = new Error((data && data.error && data.error.message) || `HTTP ${response.status}`);
      error.status = response.status;
      throw error;
    }
    return data;
  }

  function add(role, text, extra = {}) {
    const item = document.createElement("div");
    item.className = `msg ${role}`;
    item.dataset.role = role;
    if (role === "agent") {
      const who = document.createElement("span");
      who.className = "who";
      who.textContent = "Support agent";
      item.append(who);
    }
    item.append(document.createTextNode(text));
    if (extra.sources && extra.sources.length) {
      const sources = document.createElement("div");
      sources.className = "sources";
      sources.textContent = `Source: ${extra.sources.map((s) => s.title || s.id).join("; ")}`;
      item.append(sources);
    }
    log.append(item);
    log.scrollTop = log.scrollHeight;
    return item;
  }

  async function poll() {
    if (!sessionId) return;
    try {
      const page = await call("GET", `/v1/support/sessions/${encodeURIComponent(sessionId)}/messages?after=${lastId}`);
      for (const message of page.data) {
        // Own turns are already on screen; what arrives by polling is what a person wrote.
        if (message.role === "agent") add("agent", message.text);
        lastId = Math.max(lastId, message.id);
      }
    } catch (error) {
      if (error.status === 404) {  // the session is gone (a new database): start afresh
        sessionId = "";
        localStorage.removeItem(storageKey);
      }
    }
  }

  async function restore() {
    if (!sessionId) return;
    try {
      const page = await call("GET", `/v1/support/sessions/${encodeURIComponent(sessionId)}/messages`);
      for (const message of page.data) {
        add(message.role, message.text, { sources: message.sources });
        lastId = Math.max(lastId, message.id);
      }
    } catch {
      sessionId = "";
      localStorage.removeItem(storageKey);
    }
  }

  async function send(text) {
    const button = $("form button");
    button.disabled = true;
    add("customer", text);
    try {
      const reply = await call("POST", "/v1/support/chat", {
        session_id: sessionId || null, customer_id: config.customer, message: text,
      });
      sessionId = reply.session_id;
      localStorage.setItem(storageKey, sessionId);
      const item = add("assistant", reply.reply, { sources: reply.sources });
      item.dataset.action = reply.action;
      lastId = Math.max(lastId, reply.message_id || 0);
    } catch (error) {
      add("error", error.message);
    } finally {
      button.disabled = false;
    }
  }

  function setOpen(open) {
    $(".panel").hidden = !open;
    $(".launcher").setAttribute("aria-expanded", String(open));
    clearInterval(pollTimer);
    if (open) {
      pollTimer = setInterval(poll, config.pollMs);
      $("input").focus();
    }
  }

  $(".launcher").addEventListener("click", () => setOpen($(".panel").hidden));
  $(".close").addEventListener("click", () => setOpen(false));
  $("form").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = $("input");
    const text = input.value.trim();
    if (!text) return;
    input.value = "";
    send(text);
  });

  function mount() {
    document.body.append(host);
    if (!config.customer) add("error", "This chat is not set up: the script tag needs data-customer.");
    restore().then(() => { if (config.open) setOpen(true); });
  }
  if (document.body) mount();
  else document.addEventListener("DOMContentLoaded", mount);
})();
