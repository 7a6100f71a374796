// The benchmark's credential API (the operator's side of the sidecar) in a process of its own, so
// receiving and storing the sidecar's session events does not stall the load generator. Its
// kb-api connection points at UPSTREAM_URL, trusting UPSTREAM_CA; a kb-postgres connection is
// granted when KB_POSTGRES holds its {credential, grant} as JSON. Prints {url, caPem} when
// listening; answers the IPC message "events" with how many session events it stored.
import { CredentialApiServer } from "../../sidecar/src/testing/credential-api-server.ts";

const operator = await CredentialApiServer.create();
operator.kbApi = {
  type: "http",
  url: process.env.UPSTREAM_URL ?? "",
  caPem: process.env.UPSTREAM_CA ?? "",
  headers: { authorization: "Bearer bench-token" },
};
if (process.env.KB_POSTGRES) operator.kbPostgres = JSON.parse(process.env.KB_POSTGRES);
await operator.listen();
process.on("message", (message) => {
  if (message === "events") process.send?.(operator.events.size);
});
process.on("SIGTERM", () => void operator.close().then(() => process.exit(0)));
process.stdout.write(`${JSON.stringify({ url: operator.url, caPem: operator.caPem })}\n`);
