// The files through which the graph trusts the pod's CA, in the directory the sidecar shares
// with it read-only (LGJIT_TRUST_DIR): ca.pem (the pod CA alone, for NODE_EXTRA_CA_CERTS) and
// ca-bundle.pem (it and the public roots, for SSL_CERT_FILE, REQUESTS_CA_BUNDLE...). Each is
// written beside and renamed into place, so a reader never sees half of one.
import { renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { type PodCa, trustBundle } from "./pod-ca.ts";

export const trustFileNames = { ca: "ca.pem", bundle: "ca-bundle.pem" } as const;

export function writeTrustFiles(directory: string, ca: PodCa): void {
  const contents = { ca: ca.certificatePem, bundle: trustBundle(ca) };
  for (const which of ["ca", "bundle"] as const) {
    const path = join(directory, trustFileNames[which]);
    writeFileSync(`${path}.tmp`, contents[which], { mode: 0o644 });
    renameSync(`${path}.tmp`, path);
  }
}
