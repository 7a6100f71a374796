// TLS to a PostgreSQL server as a Connection's sslMode means it in libpq, for both the
// operator's admin connection and the sidecar's upstream connections.
import { isIP } from "node:net";
import type { ConnectionOptions } from "node:tls";

export type PostgresSslMode = "disable" | "require" | "verify-full";

/** The TLS options for the server, or undefined for sslMode disable. */
export function postgresTlsOptions(
  sslMode: PostgresSslMode,
  host: string,
  caPem: string | undefined,
): ConnectionOptions | undefined {
  switch (sslMode) {
    case "disable":
      return undefined;
    case "require":
      // libpq's require encrypts without verifying, unless a CA is given: then it checks the
      // chain (as libpq does with a root certificate), still not the host name.
      return caPem
        ? { ca: caPem, checkServerIdentity: () => undefined }
        : { rejectUnauthorized: false };
    case "verify-full":
      return {
        rejectUnauthorized: true,
        ...(caPem ? { ca: caPem } : {}),
        ...(isIP(host) ? {} : { servername: host }),
      };
  }
}
