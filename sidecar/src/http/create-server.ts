// node:http's createServer, loaded through require: an ES import of node:http reads all its
// exports, and their lazy WebSocket getters then load Node's own copy of undici (about 8 MB of
// resident memory the sidecar never uses).
import { createRequire } from "node:module";

export const { createServer } = createRequire(import.meta.url)(
  "node:http",
) as typeof import("node:http");
