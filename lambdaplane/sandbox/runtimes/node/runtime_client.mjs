// The HTTP/1.1 of lambdaplane's Node.js runtime (bootstrap.mjs), over node:net: a client for
// the Runtime API (requests with a Content-Length body; the API answers every request with a
// Content-Length, sandbox/runtime_http.py) on one keep-alive connection, and the small fake of
// that API the pre-started runtime warms itself up against. node:http would do both, but
// loading it and running its first request and its first server cost 20-35 ms more CPU at
// every start of node (docs/runtimes.md), the share of a node boot that decides how many cold
// starts find a pre-started node ready.
import { createRequire } from "node:module";

const net = createRequire(import.meta.url)("node:net");
const HEAD_END = "\r\n\r\n";
let idle = null; // a connection with no request in flight: the next request's

function parseHead(text) {
  const lines = text.split("\r\n");
  const match = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0]);
  if (!match) return null;
  const headers = {};
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(":");
    if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  const length = headers["content-length"] === undefined ? -1 : Number(headers["content-length"]);
  return { status: Number(match[1]), headers, length };
}

function connect(host, port) {
  const socket = net.connect({ host, port: Number(port) });
  socket.setNoDelay(true);
  socket.on("error", () => {}); // reported to the request in flight (its own listener), if any
  socket.on("close", () => { if (idle === socket) idle = null; });
  return socket;
}

/** Drop the idle connection (the warm-up's, before the function's API is known). */
export function resetConnections() {
  if (idle !== null) idle.destroy();
  idle = null;
}

/** One request; resolves to {status, headers (lower-case names), body (a string)}. A request
 * made while another is in flight (a fatal error reported during a long poll) gets a
 * connection of its own. */
export function request(host, port, method, path, body, headers = {}) {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? null : Buffer.from(body);
    const socket = idle !== null && !idle.destroyed ? idle : connect(host, port);
    idle = null;
    socket.ref(); // in flight: keeps node running (the long poll for the next event too)
    let head = `${method} ${path} HTTP/1.1\r\nHost: ${host}:${port}\r\n`;
    for (const [name, value] of Object.entries(headers)) head += `${name}: ${value}\r\n`;
    if (data !== null) {
      head += `Content-Type: application/json\r\nContent-Length: ${data.length}\r\n`;
    }
    let received = Buffer.alloc(0); // the head, until it is parsed
    const chunks = []; // then the body's chunks (joined once: events of up to 6 MB)
    let size = 0;
    let response = null;
    const finish = (error) => {
      socket.off("data", onData);
      socket.off("error", onError);
      socket.off("close", onClose);
      if (error) {
        socket.destroy();
        reject(error);
        return;
      }
      const whole = chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, size);
      const text = whole.subarray(0, response.length).toString("utf8");
      if (response.headers.connection === "close" || size > response.length ||
          idle !== null) {
        socket.destroy();
      } else {
        idle = socket;
        socket.unref(); // idle: the event loop can empty (callbackWaitsForEmptyEventLoop)
      }
      resolve({ status: response.status, headers: response.headers, body: text });
    };
    const onData = (chunk) => {
      if (response === null) {
        received = received.length ? Buffer.concat([received, chunk]) : chunk;
        const end = received.indexOf(HEAD_END);
        if (end < 0) return;
        response = parseHead(received.subarray(0, end).toString("latin1"));
        if (response === null) {
          finish(new Error("malformed response from the Runtime API"));
          return;
        }
        chunk = received.subarray(end + HEAD_END.length);
      }
      chunks.push(chunk);
      size += chunk.length;
      if (response.length >= 0 && size >= response.length) finish(null);
    };
    const onError = (error) => finish(error);
    const onClose = () => {
      if (response !== null && response.length < 0) {
        response.length = size; // a body that ends with its connection
        finish(null);
      } else {
        finish(new Error("socket hang up"));
      }
    };
    socket.on("data", onData);
    socket.on("error", onError);
    socket.on("close", onClose);
    socket.write(data === null ? head + "\r\n" : Buffer.concat([Buffer.from(head + "\r\n"), data]));
  });
}

/** A fake Runtime API on 127.0.0.1 for the warm-up: `next` (GET) answers with `nextHeaders`
 * and `nextBody`, anything else with 202. Resolves to {port, close()}. */
export function fakeRuntimeApi(nextHeaders, nextBody) {
  const sockets = new Set();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on("error", () => {});
    socket.on("close", () => sockets.delete(socket));
    let pending = Buffer.alloc(0);
    socket.on("data", (chunk) => {
      pending = Buffer.concat([pending, chunk]);
      for (;;) {
        const end = pending.indexOf(HEAD_END);
        if (end < 0) return;
        const head = pending.subarray(0, end).toString("latin1");
        const length = Number(/\r\ncontent-length:\s*(\d+)/i.exec(head)?.[1] || 0);
        if (pending.length < end + HEAD_END.length + length) return;
        pending = pending.subarray(end + HEAD_END.length + length);
        const answer = head.startsWith("GET ")
          ? { status: "200 OK", headers: nextHeaders(), body: nextBody }
          : { status: "202 Accepted", headers: {}, body: '{"status":"OK"}' };
        let out = `HTTP/1.1 ${answer.status}\r\nContent-Type: application/json\r\n`;
        for (const [name, value] of Object.entries(answer.headers)) out += `${name}: ${value}\r\n`;
        socket.write(`${out}Content-Length: ${Buffer.byteLength(answer.body)}\r\n\r\n${answer.body}`);
      }
    });
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve({
      port: server.address().port,
      close: () => new Promise((done) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => done());
      }),
    }));
  });
}
