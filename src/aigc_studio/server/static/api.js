// The studio's only door to the server: JSON calls, the content stream and file downloads, all carrying the
// API key as a Bearer token. Failures become ApiError with the server's own message (OpenAI error body).

/** An HTTP failure with the fields of the server's error body ({"error": {message, type, param, code}}). */
export class ApiError extends Error {
  constructor(status, message, { type = null, param = null, code = null } = {}) {
    super(message);
    this.name = "ApiError";
    this.status = status; // 0 when the server could not be reached at all
    this.type = type;
    this.param = param;
    this.code = code;
  }
}

async function errorFrom(response) {
  let text = "";
  try {
    text = await response.text();
  } catch {
    // The body could not be read; the status line still says what happened.
  }
  let body = null;
  try {
    body = JSON.parse(text);
  } catch {
    body = null;
  }
  if (body && typeof body.error === "object" && body.error) {
    const { message, type, param, code } = body.error;
    return new ApiError(response.status, message || response.statusText, { type, param, code });
  }
  // Not our error body (a proxy in front of the server, say): show what came back rather than nothing.
  // An HTML error page says nothing useful in a one-line message, so only its status line is kept.
  const plain = text.trim().startsWith("<") ? "" : text.trim().slice(0, 300);
  const detail = body && body.detail ? JSON.stringify(body.detail) : plain;
  return new ApiError(response.status, detail || `${response.status} ${response.statusText}`.trim());
}

/**
 * A client bound to a key source.
 * @param {() => string} getKey returns the API key to send, or "" for none
 */
export function createApi(getKey) {
  async function send(method, path, { body, signal, accept = "application/json" } = {}) {
    const headers = { Accept: accept };
    const key = getKey();
    if (key) headers.Authorization = `Bearer ${key}`;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let response;
    try {
      response = await fetch(path, {
        method, headers, signal, body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (error) {
      if (error.name === "AbortError") throw error;
      throw new ApiError(0, error.message || "network error", { type: "network_error" });
    }
    if (!response.ok) throw await errorFrom(response);
    return response;
  }

  async function json(method, path, options) {
    const response = await send(method, path, options);
    if (response.status === 204) return null;
    const text = await response.text();
    return text ? JSON.parse(text) : null;
  }

  /**
   * POST /v1/content with stream true and read its server-sent events as they arrive (EventSource cannot POST).
   * @param {object} request the content request (stream is forced on)
   * @param {{onDelta: (candidate: number, text: string) => void, signal?: AbortSignal}} handlers
   * @returns {Promise<object>} the final content object (the "result" event)
   */
  async function streamContent(request, { onDelta, signal }) {
    const response = await send("POST", "/v1/content", {
      body: { ...request, stream: true }, signal, accept: "text/event-stream",
    });
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    let result = null;
    for (;;) {
      const { value, done } = await reader.read();
      if (value) buffer += value.replace(/\r\n?/g, "\n");
      // Events are separated by a blank line; the last piece may be incomplete and waits for more bytes.
      let boundary;
      while ((boundary = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, boundary);
        buffer = buffer.slice(boundary + 2);
        const data = block.split("\n").filter((line) => line.startsWith("data:"))
          .map((line) => line.slice(5).replace(/^ /, "")).join("\n");
        if (!data) continue;
        if (data === "[DONE]") {
          if (result) return result;
          throw new ApiError(200, "", { code: "stream_incomplete" });
        }
        const event = JSON.parse(data);
        if (event.error) {
          const { message, type, param, code } = event.error;
          throw new ApiError(event.error.status ?? 400, message, { type, param, code });
        }
        if (event.type === "delta") onDelta(event.candidate ?? 0, event.text ?? "");
        else if (event.type === "result") result = event;
      }
      if (done) break;
    }
    if (result) return result;
    throw new ApiError(200, "", { code: "stream_incomplete" });
  }

  /** GET a file (library export) and return its blob with the file name the server suggested. */
  async function download(path, fallbackName) {
    const response = await send("GET", path, { accept: "*/*" });
    const disposition = response.headers.get("Content-Disposition") || "";
    const match = /filename\*?=(?:UTF-8'')?"?([^";]+)"?/i.exec(disposition);
    const name = match ? decodeURIComponent(match[1]) : fallbackName;
    return { blob: await response.blob(), name };
  }

  return {
    get: (path, options) => json("GET", path, options),
    post: (path, body, options) => json("POST", path, { ...options, body }),
    patch: (path, body, options) => json("PATCH", path, { ...options, body }),
    delete: (path, options) => json("DELETE", path, options),
    streamContent,
    download,
  };
}

/**
 * Token log-probabilities in any of the shapes the API may use, as [{token, logprob, top: [{token, logprob}]}].
 * Accepts OpenAI chat ({content: [{token, logprob, top_logprobs: [{token, logprob}]}]}), OpenAI completions
 * ({tokens, token_logprobs, top_logprobs: [{token: logprob}]}) and a plain list of the engine's TokenLogprob
 * ({token, logprob, top_logprobs: {token: logprob}}). Returns null when there is nothing to show.
 */
export function normalizeLogprobs(logprobs) {
  if (!logprobs) return null;
  const topList = (top) => {
    if (!top) return [];
    if (Array.isArray(top)) return top.map((entry) => ({ token: entry.token, logprob: entry.logprob }));
    return Object.entries(top).map(([token, logprob]) => ({ token, logprob }));
  };
  if (Array.isArray(logprobs.content)) {
    return logprobs.content.map((entry) => ({ token: entry.token, logprob: entry.logprob, top: topList(entry.top_logprobs) }));
  }
  if (Array.isArray(logprobs.tokens)) {
    return logprobs.tokens.map((token, i) => ({
      token, logprob: logprobs.token_logprobs?.[i] ?? null, top: topList(logprobs.top_logprobs?.[i]),
    }));
  }
  if (Array.isArray(logprobs)) {
    return logprobs.map((entry) => ({ token: entry.token, logprob: entry.logprob, top: topList(entry.top_logprobs) }));
  }
  return null;
}
