// The demo's services beside the test node, running until stopped (make cluster-down):
// - the session store both operator replicas share: a PostgreSQL the pods reach on the node's
//   address, its URL in Secret langgraph-jit/session-store;
// - the knowledge-base API the graph calls: a real HTTPS server with its own CA, behind Service
//   agents/kb-api, its bearer token and CA in Secret langgraph-jit/kb-api;
// - the knowledge-base database: a PostgreSQL with TLS from its own CA behind Service
//   agents/kb-db, its admin login in Secret langgraph-jit/kb-admin and CA in langgraph-jit/kb-db-ca.
// The Secrets sit in the operator's namespace, the credentials namespace of its ClusterConnections,
// where the team working in agents reads nothing.
// Prints "ready" once all are.
import { CoreV1Api } from "@kubernetes/client-node";
import { kubeConfigFor, statusOf } from "../e2e/lib/cluster.ts";
import { startKbApi } from "../e2e/lib/kb-api.ts";
import { startKbDb } from "../e2e/lib/kb-db.ts";
import { startPostgres, testNode } from "../e2e/lib/postgres.ts";

const core = kubeConfigFor("admin").makeApiClient(CoreV1Api);
const ignoreExisting = (error: unknown) => {
  if (statusOf(error) !== 409) throw error;
};

const sessions = await startPostgres({ nodeAccess: true });
await core.createNamespace({ body: { metadata: { name: "langgraph-jit" } } }).catch(ignoreExisting);
await core
  .deleteNamespacedSecret({ namespace: "langgraph-jit", name: "session-store" })
  .catch(() => {});
await core.createNamespacedSecret({
  namespace: "langgraph-jit",
  body: {
    metadata: { name: "session-store" },
    stringData: { url: sessions.url(undefined, undefined, undefined, testNode.address) },
  },
});

const kbApi = await startKbApi("agents", "langgraph-jit");
const kbDb = await startKbDb("agents", "langgraph-jit");
const stop = async () => {
  await kbApi.stop();
  await kbDb.stop();
  await sessions.stop();
  process.exit(0);
};
process.on("SIGTERM", () => void stop());
process.on("SIGINT", () => void stop());
console.log(
  `ready: sessions on ${testNode.address}, kb-api behind agents/kb-api, kb-db behind agents/kb-db`,
);
// Each request the KB API answers, so the demo can show what reached it.
setInterval(() => {
  for (const request of kbApi.requests.splice(0)) {
    const auth = request.authorization ? "with the connection's token" : "without a token";
    console.log(`kb-api saw ${request.method} ${request.path} ${auth}`);
  }
}, 200);
