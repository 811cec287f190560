#!/usr/bin/env node
// Drive Stringee's own Web SDK (npm package `stringee`) against a monitor hub under Node,
// and report what it sees as JSON lines on stdout, one object per line:
//
//   {"event":"connect"}                              socket open (the SDK sends AUTHEN now)
//   {"event":"authen","body":{...}}                  the AUTHEN reply as the SDK got it
//   {"event":"changeAttribute","id":..,"body":{..}}  reply to changeAttribute
//   {"event":"messagefromtopic","body":{...}}        a service-102 message
//   {"event":"otherdeviceauthen","body":{...}}       a service-104 notice
//   {"event":"disconnect"}                           the socket closed (the SDK reconnects
//                                                    by itself unless the app disconnected)
//   {"event":"send"|"recv","frame":{...}}            raw frames, only with --trace
//   {"event":"error","message":"..."}                harness-side problem
//   {"event":"timeout"}                              --timeout-ms passed; exit code 3
//
// Every line also has "t" (epoch ms). The SDK's own console output goes to stderr.
//
// Usage:
//   STRINGEE_TOKEN=... node stringee_client.mjs --url ws://127.0.0.1:6899/ \
//       [--attribute manual_status --value '"busy"'] [--trace] [--timeout-ms 60000]
//       [--stay]
//
// --url defaults to $STRINGEE_HUB_URL, --token to $STRINGEE_TOKEN. --value is JSON
// (a bare word that is not JSON is taken as a string). With --attribute, changeAttribute
// is called once right after a successful AUTHEN (id "initial").
//
// Commands on stdin, one JSON object per line:
//   {"cmd":"changeAttribute","attribute":"manual_status","value":"away","id":2}
//   {"cmd":"disconnect"}    the app-side disconnect (no reconnect), then keeps running
//   {"cmd":"quit"}          exit 0
// End of stdin also exits 0. An AUTHEN failure (r != 0) exits 2 after printing it, unless
// --stay: then the harness keeps running, to show what the SDK does next by itself.

import { createRequire } from "node:module";
import { createInterface } from "node:readline";
import { format } from "node:util";
import WS from "ws";

function emit(obj) {
  process.stdout.write(JSON.stringify({ t: Date.now(), ...obj }) + "\n");
}

function parseArgs(argv) {
  const opts = {
    url: process.env.STRINGEE_HUB_URL || "",
    token: process.env.STRINGEE_TOKEN || "",
    attribute: null,
    value: undefined,
    trace: false,
    timeoutMs: 60000,
    stay: false,
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const next = () => {
      if (i + 1 >= argv.length) throw new Error(`${arg} needs a value`);
      return argv[++i];
    };
    if (arg === "--url") opts.url = next();
    else if (arg === "--token") opts.token = next();
    else if (arg === "--attribute") opts.attribute = next();
    else if (arg === "--value") opts.value = parseValue(next());
    else if (arg === "--trace") opts.trace = true;
    else if (arg === "--timeout-ms") opts.timeoutMs = Number(next());
    else if (arg === "--stay") opts.stay = true;
    else throw new Error(`unknown argument ${arg}`);
  }
  if (!opts.url) throw new Error("no hub URL: pass --url or set STRINGEE_HUB_URL");
  if (!opts.token) throw new Error("no token: set STRINGEE_TOKEN or pass --token");
  if (opts.attribute !== null && opts.value === undefined) opts.value = null;
  return opts;
}

function parseValue(text) {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

function installBrowserShims(trace) {
  // The SDK logs a lot with console.log: keep stdout for our JSON lines.
  const toStderr = (...args) => process.stderr.write(format(...args) + "\n");
  console.log = console.info = console.warn = console.debug = toStderr;

  const store = new Map();
  globalThis.localStorage = {
    getItem: (k) => (store.has(String(k)) ? store.get(String(k)) : null),
    setItem: (k, v) => void store.set(String(k), String(v)),
    removeItem: (k) => void store.delete(String(k)),
    clear: () => store.clear(),
    key: (n) => [...store.keys()][n] ?? null,
    get length() {
      return store.size;
    },
  };
  globalThis.screen = { width: 1920, height: 1080 };
  if (typeof globalThis.navigator === "undefined") {
    globalThis.navigator = {
      userAgent: `Node.js/${process.versions.node} monitor-stringee-compat`,
      platform: process.platform,
      appVersion: "",
      maxTouchPoints: 0,
    };
  }

  // The SDK uses the global WebSocket (onopen/onmessage/onclose/onerror, send,
  // readyState, WebSocket.OPEN): the `ws` package provides exactly that API.
  class TracingWebSocket extends WS {
    constructor(url, protocols) {
      super(url, protocols);
      if (trace) {
        this.addEventListener("message", (ev) => emit({ event: "recv", frame: tryJson(ev.data) }));
      }
    }

    send(data, ...rest) {
      if (trace) emit({ event: "send", frame: tryJson(data) });
      return super.send(data, ...rest);
    }
  }
  Object.defineProperty(globalThis, "WebSocket", {
    value: TracingWebSocket, writable: true, configurable: true,
  });
}

function tryJson(data) {
  const text = typeof data === "string" ? data : Buffer.from(data).toString("utf8");
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

function main() {
  let opts;
  try {
    opts = parseArgs(process.argv.slice(2));
  } catch (err) {
    emit({ event: "error", message: String(err.message || err) });
    process.exit(64);
  }
  installBrowserShims(opts.trace);
  const require = createRequire(import.meta.url);
  const { StringeeClient } = require("stringee");

  const client = new StringeeClient([opts.url]);
  let authenticated = false;

  const changeAttribute = (attribute, value, id) => {
    if (!client.socket) {
      emit({ event: "error", message: "changeAttribute: not connected", id });
      return;
    }
    client.changeAttribute(attribute, value, (body) => emit({ event: "changeAttribute", id, body }));
  };

  client.on("connect", () => emit({ event: "connect" }));
  client.on("authen", (body) => {
    emit({ event: "authen", body });
    if (body.r !== 0) {
      if (!opts.stay) setTimeout(() => process.exit(2), 50);
      return;
    }
    if (!authenticated && opts.attribute !== null) {
      changeAttribute(opts.attribute, opts.value, "initial");
    }
    authenticated = true;
  });
  client.on("disconnect", () => emit({ event: "disconnect" }));
  client.on("messagefromtopic", (body) => emit({ event: "messagefromtopic", body }));
  client.on("otherdeviceauthen", (body) => emit({ event: "otherdeviceauthen", body }));
  client.on("requestnewtoken", () => emit({ event: "requestnewtoken" }));
  client.on("custommessage", (body) => emit({ event: "custommessage", body }));

  const rl = createInterface({ input: process.stdin });
  rl.on("line", (line) => {
    if (!line.trim()) return;
    let cmd;
    try {
      cmd = JSON.parse(line);
    } catch {
      emit({ event: "error", message: `not JSON on stdin: ${line}` });
      return;
    }
    if (cmd.cmd === "changeAttribute") changeAttribute(cmd.attribute, cmd.value, cmd.id ?? null);
    else if (cmd.cmd === "disconnect") client.disconnect();
    else if (cmd.cmd === "quit") process.exit(0);
    else emit({ event: "error", message: `unknown command ${JSON.stringify(cmd)}` });
  });
  rl.on("close", () => process.exit(0));

  if (opts.timeoutMs > 0) {
    setTimeout(() => {
      emit({ event: "timeout" });
      process.exit(3);
    }, opts.timeoutMs).unref();
  }

  client.connect(opts.token);
}

main();
