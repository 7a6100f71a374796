// A tagged pod's sidecar is not told its run's uid: it takes it from the first bundle it
// verifies and holds every later one to it, as a Job's sidecar holds them to the uid it is told.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { CredentialApiServer, testIdentity } from "../testing/credential-api-server.ts";
import { OperatorClient } from "./operator-client.ts";
import { BundleRejectedError, RunTokenVerifier } from "./run-token-verifier.ts";

describe("the run JWT's subject", () => {
  let server: CredentialApiServer;
  let operator: OperatorClient;
  before(async () => {
    server = await CredentialApiServer.create();
    await server.listen();
    operator = new OperatorClient({ baseUrl: server.url, ca: server.caPem });
  });
  after(async () => {
    await operator.close();
    await server.close();
  });

  const verifier = (runUid: string | undefined) =>
    new RunTokenVerifier({ operator, issuer: server.url, identity: { ...testIdentity, runUid } });
  const otherRun = () =>
    server.bundle({
      claims: {
        sub: "uid-of-another-run",
        run: {
          namespace: "agents",
          name: testIdentity.run,
          uid: "uid-of-another-run",
          deadline: "",
        },
      },
    });

  it("is learnt from the first bundle when the sidecar is not told it, then held to", async () => {
    const learning = verifier(undefined);
    const first = await learning.verify(await server.bundle());
    assert.equal(first.claims.run.uid, testIdentity.runUid);
    await assert.rejects(learning.verify(await otherRun()), (error: unknown) => {
      assert.ok(error instanceof BundleRejectedError);
      assert.match(error.message, /unexpected "sub" claim value/);
      return true;
    });
    assert.equal((await learning.verify(await server.bundle())).claims.sub, testIdentity.runUid);
  });

  it("is held to the uid the sidecar is told from the start", async () => {
    await assert.rejects(verifier(testIdentity.runUid).verify(await otherRun()), /"sub" claim/);
  });
});
