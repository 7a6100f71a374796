// The benchmark's upstream API in a process of its own: HTTPS with keep-alive, a 1 KB JSON body
// for every request. Reads its certificate from the environment; prints its port when listening.
import { createServer } from "node:https";

const body = JSON.stringify({ items: [{ id: 1, text: "x".repeat(1000 - 30) }] });
const server = createServer(
  { cert: process.env.UPSTREAM_CERT, key: process.env.UPSTREAM_KEY, keepAliveTimeout: 60_000 },
  (req, res) => {
    req.resume();
    res.writeHead(200, {
      "content-type": "application/json",
      "content-length": Buffer.byteLength(body),
    });
    res.end(body);
  },
);
server.listen(0, "127.0.0.1", () => {
  const address = server.address();
  process.stdout.write(`${typeof address === "object" && address ? address.port : 0}\n`);
});
process.on("SIGTERM", () => process.exit(0));
