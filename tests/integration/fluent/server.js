// A Fluent Forward receiver for aiolog's integration tests: the Fluent organisation's own
// FluentServer (@fluent-org/logger), on 127.0.0.1.
//
//   node server.js --out FILE [--port N] [--shared-key K] [--hostname H]
//                  [--user NAME:PASSWORD] [--tls-cert PEM --tls-key PEM] [--die-after N]
//
// Prints "listening PORT" once it accepts connections. Appends one JSON line per entry to
// FILE, synchronously and before the message's ack (so what was acked is in the file, and a
// SIGKILL loses nothing written): {tag, time, chunk, delivery, record}, time as
// {epoch, nano} for EventTime. --die-after N: on the message that brings the entries past
// N, write its entries and SIGKILL itself before the ack goes out (a peer that took a
// batch and died). Closes on SIGTERM.
"use strict";
const fs = require("fs");
const path = require("path");
const base = path.join(__dirname, "node_modules", "@fluent-org", "logger", "build", "src");
const { FluentServer } = require(path.join(base, "server.js"));
const protocol = require(path.join(base, "protocol.js"));

const args = {};
for (let i = 2; i < process.argv.length; i += 2) {
  args[process.argv[i].replace(/^--/, "")] = process.argv[i + 1];
}
const out = fs.openSync(args.out, "a");
const dieAfter = args["die-after"] ? Number(args["die-after"]) : Infinity;
let entries = 0;

// The server acks a chunk, then emits its entries, without their chunk id. Record them
// here instead, where it parses each message, before the ack goes out: whatever was acked
// is in the file. "delivery" tells apart two arrivals of one chunk (pid and message count).
let messages = 0;
const parseTransport = protocol.parseTransport;
protocol.parseTransport = (message) => {
  const parsed = parseTransport(message);
  messages += 1;
  const delivery = `${process.pid}-${messages}`;
  const chunk = parsed.chunk || null;
  const die = entries + parsed.entries.length > dieAfter;
  parsed.entries.forEach(([time, record]) => write(parsed.tag, time, record, chunk, delivery));
  if (die) {
    process.kill(process.pid, "SIGKILL");
  }
  return parsed;
};

function write(tag, time, record, chunk, delivery) {
  entries += 1;
  const t = typeof time === "number" ? time : { epoch: time.epoch, nano: time.nano };
  fs.writeSync(out, JSON.stringify({ tag, time: t, chunk, delivery, record }) + "\n");
}

const options = { listenOptions: { host: "127.0.0.1", port: Number(args.port || 0) } };
if (args["shared-key"]) {
  const userDict = {};
  if (args.user) {
    const [name, password] = args.user.split(":");
    userDict[name] = password;
  }
  options.security = {
    serverHostname: args.hostname || "fluent-peer",
    sharedKey: args["shared-key"],
    authorize: Boolean(args.user),
    userDict,
  };
}
if (args["tls-cert"]) {
  options.tlsOptions = { cert: fs.readFileSync(args["tls-cert"]), key: fs.readFileSync(args["tls-key"]) };
}
const server = new FluentServer(options);
server.listen().then(() => console.log(`listening ${server.port}`));
process.on("SIGTERM", () => {
  // close() waits for clients to hang up; do not let a connected client hold us.
  setTimeout(() => process.exit(0), 500).unref();
  server.close().then(() => process.exit(0));
});
