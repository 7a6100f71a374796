// A real PostgreSQL 15 behind the sidecar's Postgres listener, for the data path's tests: TLS
// with its own CA (verify-full), SCRAM, a run role in the kb database's read and write roles, and
// a people table with values the masking must catch. The credential is held by a small holder
// the tests revoke at will; the credential client's own lifecycle is tested with the operator.
import { randomBytes } from "node:crypto";
import { pino } from "pino";
import type { GrantClaim, PostgresCredential } from "../../../api/credentials.ts";
import type { SessionRecord } from "../../../api/session-events.ts";
import { type PostgresServer, startPostgres } from "../../../e2e/lib/postgres.ts";
import {
  generateCertificateAuthority,
  issueServingCertificate,
} from "../../../operator/src/admission/webhook-certs.ts";
import type { CredentialChange } from "../credentials/credential-client.ts";
import type { VerifiedCredential } from "../credentials/run-token-verifier.ts";
import {
  PostgresListeners,
  type PostgresListenersOptions,
} from "../postgres/postgres-listeners.ts";
import { freePort, waitFor } from "./test-helpers.ts";

export const connection = "kb-postgres";

export interface PostgresFixture {
  server: PostgresServer;
  /** The run role's login, which only the sidecar holds. */
  credential: PostgresCredential;
  /** The listener's URL, as the graph's DATABASE_URL. */
  url: string;
  port: number;
  records: SessionRecord[];
  /** Whether events can be recorded (false: the event buffer's disk is full). */
  accepting: boolean;
  /** Ends the credential: every session gets FATAL and the listener closes. */
  revoke(): void;
  /** Opens the listener again with a grant (after revoke, or to change the grant or login). */
  grant(grant: Partial<GrantClaim>, login?: Partial<PostgresCredential>): Promise<void>;
  stop(): Promise<void>;
}

export const people = [
  { name: "Ada", email: "ada@example.com", ssn: "123-45-6789", card: "4111111111111111" },
  { name: "Grace", email: "grace@example.org", ssn: "987-65-4320", card: "5500005555555559" },
];

export async function startPostgresFixture(
  grant: Partial<GrantClaim>,
  options: Pick<PostgresListenersOptions, "holds"> = {},
): Promise<PostgresFixture> {
  const ca = await generateCertificateAuthority({ commonName: "pg-test-ca", validityDays: 1 });
  const serving = await issueServingCertificate(ca, {
    dnsNames: ["localhost"],
    ipAddresses: ["127.0.0.1"],
    validityDays: 1,
  });
  const server = await startPostgres({ tls: serving });
  const password = randomBytes(18).toString("base64url");
  const role = `run_${randomBytes(4).toString("hex")}`;
  const admin = await server.connect(server.adminUser, server.adminPassword, "kb");
  try {
    await admin.query(`CREATE ROLE ${role} LOGIN PASSWORD '${password}' IN ROLE kb_read, kb_write`);
    await admin.query(`SET ROLE kb_owner`);
    await admin.query(
      `CREATE TABLE public.people (id serial PRIMARY KEY, name text, email text, ssn text,
         card bigint, profile jsonb)`,
    );
    await admin.query(`GRANT SELECT ON public.people TO kb_read`);
    await admin.query(`GRANT INSERT, UPDATE, DELETE ON public.people TO kb_write`);
    await admin.query(`GRANT USAGE ON SEQUENCE public.people_id_seq TO kb_write`);
    for (const person of people) {
      await admin.query(
        "INSERT INTO public.people (name, email, ssn, card, profile) VALUES ($1, $2, $3, $4, $5)",
        [person.name, person.email, person.ssn, person.card, { contact: person.email }],
      );
    }
  } finally {
    await admin.end();
  }
  const credential: PostgresCredential = {
    type: "postgres",
    host: "127.0.0.1",
    port: server.port,
    database: "kb",
    sslMode: "verify-full",
    caPem: ca.certPem,
    username: role,
    password,
    dynamic: true,
  };
  const port = await freePort();
  const records: SessionRecord[] = [];
  let held: VerifiedCredential | undefined;
  const subscribers = new Set<(change: CredentialChange) => void>();
  const publish = (change: CredentialChange) => {
    for (const subscriber of subscribers) subscriber(change);
  };
  const listeners = new PostgresListeners({
    ...options,
    ports: new Map([[connection, port]]),
    run: "agents/kb-refresh",
    credentials: {
      current: () => held,
      subscribe: (subscriber) => {
        subscribers.add(subscriber);
        return () => subscribers.delete(subscriber);
      },
    },
    record: (record) => records.push(record),
    canRecord: () => fixture.accepting,
    logger: pino({ level: process.env.LGJIT_TEST_LOG ?? "silent" }),
  });
  const fixture: PostgresFixture = {
    server,
    credential,
    url: `postgres://run@127.0.0.1:${port}/kb`,
    port,
    records,
    accepting: true,
    revoke() {
      held = undefined;
      publish({ state: "revoked", credential: undefined });
    },
    async grant(claim, login) {
      held = heldCredential(
        { ...credential, ...login },
        {
          connection,
          type: "postgres",
          actions: ["read"],
          ...claim,
        },
      );
      publish({ state: "active", credential: held });
      await waitFor("the Postgres listener", () => listeners.notListening().length === 0, 10_000);
    },
    async stop() {
      await listeners.close();
      await server.stop();
    },
  };
  await fixture.grant(grant);
  return fixture;
}

function heldCredential(credential: PostgresCredential, grant: GrantClaim): VerifiedCredential {
  const deadline = new Date(Date.now() + 3_600_000);
  return {
    token: "run-jwt",
    kid: "test",
    claims: {
      run: {
        namespace: "agents",
        name: "kb-refresh",
        uid: "uid-1",
        deadline: deadline.toISOString(),
      },
      pod: { name: "pod", uid: "pod-uid" },
      grants: [grant],
    } as VerifiedCredential["claims"],
    credentials: { [connection]: credential },
    expiresAt: deadline,
  };
}
