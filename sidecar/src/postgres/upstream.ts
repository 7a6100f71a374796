// One upstream session: a TCP (and, per sslMode, TLS) connection to the server, logged in with
// the run's credential, up to the server's first ReadyForQuery. The graph never sees the login.
import { createHash } from "node:crypto";
import { connect as connectTcp, type Socket } from "node:net";
import {
  type ConnectionOptions,
  connect as connectTls,
  createSecureContext,
  type SecureContext,
  type TLSSocket,
} from "node:tls";
import type { PostgresCredential } from "../../../api/credentials.ts";
import { errorMessage } from "../../../api/errors.ts";
import { postgresTlsOptions } from "../../../api/postgres-tls.ts";
import {
  cstring,
  type Message,
  MessageReader,
  parseNoticeFields,
  passwordMessage,
  sslRequest,
  startupPacket,
} from "./protocol.ts";
import { ScramError, scramMechanism, startScram } from "./scram.ts";

/** The server's messages are trusted more than the graph's, but not without bound. */
export const maxBackendMessageBytes = 1024 * 1024 * 1024;
const connectTimeoutMs = 10_000;

export interface UpstreamSession {
  socket: Socket | TLSSocket;
  /** ParameterStatus frames, as the server sent them: the graph gets them all. */
  parameterStatuses: Buffer[];
  /** The server's process id and key, which only the sidecar holds (it cancels with them). */
  backendKey: { processId: number; secretKey: Buffer };
  /** NoticeResponse frames of the login. */
  notices: Buffer[];
  /** Messages that followed ReadyForQuery in the same read (none from a well-behaved server). */
  reader: MessageReader;
  /** The server's transaction status at its first ReadyForQuery. */
  status: string;
}

/** The server refused or failed the login; the message is fit for the graph's client. */
export class UpstreamError extends Error {
  override name = "UpstreamError";
  readonly sqlState: string;
  constructor(message: string, sqlState = "08006") {
    super(message);
    this.sqlState = sqlState;
  }
}

export async function openUpstream(
  credential: PostgresCredential,
  parameters: Map<string, string>,
): Promise<UpstreamSession> {
  const socket = await connectSocket(credential);
  try {
    return await login(socket, credential, parameters);
  } catch (error) {
    socket.destroy();
    throw error;
  }
}

export function where(credential: PostgresCredential): string {
  return `${credential.host}:${credential.port}`;
}

async function connectSocket(credential: PostgresCredential): Promise<Socket | TLSSocket> {
  const tcp = connectTcp({ host: credential.host, port: credential.port, noDelay: true });
  tcp.setTimeout(connectTimeoutMs);
  try {
    await new Promise<void>((resolve, reject) => {
      tcp.once("connect", resolve);
      tcp.once("error", reject);
      tcp.once("timeout", () => reject(new Error("timed out")));
    });
    const tls = tlsOptions(credential);
    if (!tls) return withoutTimeout(tcp);
    tcp.write(sslRequest());
    const answer = await readBytes(tcp, 1);
    if (answer !== "S")
      throw new UpstreamError(
        `the server at ${where(credential)} does not accept TLS, which sslMode ${credential.sslMode} requires`,
      );
    const secure = connectTls({ ...tls, socket: tcp, host: credential.host });
    await new Promise<void>((resolve, reject) => {
      secure.once("secureConnect", resolve);
      secure.once("error", reject);
    });
    return withoutTimeout(secure);
  } catch (error) {
    tcp.destroy();
    if (error instanceof UpstreamError) throw error;
    throw new UpstreamError(
      `cannot connect to the server at ${where(credential)}: ${errorMessage(error)}`,
    );
  }
}

// One TLS context per credential: made per connection, its CA store costs about a megabyte each.
const contexts = new WeakMap<PostgresCredential, SecureContext>();

export function tlsOptions(credential: PostgresCredential): ConnectionOptions | undefined {
  const options = postgresTlsOptions(credential.sslMode, credential.host, credential.caPem);
  if (!options) return undefined;
  let secureContext = contexts.get(credential);
  if (!secureContext) {
    secureContext = createSecureContext(options.ca ? { ca: options.ca } : {});
    contexts.set(credential, secureContext);
  }
  return { ...options, secureContext };
}

function withoutTimeout<T extends Socket>(socket: T): T {
  socket.setTimeout(0);
  socket.removeAllListeners("timeout");
  socket.removeAllListeners("error");
  return socket;
}

/** The first bytes of the socket, before any message framing (the SSLRequest answer). */
function readBytes(socket: Socket, count: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const onData = (chunk: Buffer) => {
      socket.off("data", onData);
      socket.pause();
      if (chunk.length > count) {
        // A server must not send anything after its answer before the handshake (CVE-2021-23222).
        reject(new UpstreamError("the server sent unexpected data before the TLS handshake"));
        return;
      }
      resolve(chunk.toString("latin1", 0, count));
    };
    socket.on("data", onData);
    socket.once("close", () => reject(new Error("the server closed the connection")));
  });
}

async function login(
  socket: Socket | TLSSocket,
  credential: PostgresCredential,
  parameters: Map<string, string>,
): Promise<UpstreamSession> {
  const reader = new MessageReader(maxBackendMessageBytes);
  const queue: Message[] = [];
  let waiting: (() => void) | undefined;
  let failure: Error | undefined;
  const wake = () => {
    const resume = waiting;
    waiting = undefined;
    resume?.();
  };
  const onData = (chunk: Buffer) => {
    try {
      queue.push(...reader.push(chunk));
    } catch (error) {
      failure = error as Error;
    }
    wake();
  };
  const onEnd = () => {
    failure ??= new UpstreamError(
      `the server at ${where(credential)} closed the connection during login`,
    );
    wake();
  };
  socket.on("data", onData);
  socket.on("close", onEnd);
  socket.on("error", onEnd);
  const timer = setTimeout(() => {
    failure ??= new UpstreamError(
      `the server at ${where(credential)} did not finish the login in time`,
    );
    wake();
  }, connectTimeoutMs);
  const next = async (): Promise<Message> => {
    for (;;) {
      const item = queue.shift();
      if (item) return item;
      if (failure) throw failure;
      await new Promise<void>((resolve) => {
        waiting = resolve;
      });
    }
  };
  const encrypted = "encrypted" in socket;
  const session: Omit<UpstreamSession, "socket" | "reader"> = {
    parameterStatuses: [],
    backendKey: { processId: 0, secretKey: Buffer.alloc(4) },
    notices: [],
    status: "I",
  };
  try {
    socket.resume();
    socket.write(
      startupPacket([
        ["user", credential.username],
        ["database", credential.database],
        ...parameters,
      ]),
    );
    let scram: ReturnType<typeof startScram> | undefined;
    for (;;) {
      const reply = await next();
      switch (reply.type) {
        case "R": {
          const code = reply.body.readInt32BE(0);
          if (code === 0) break;
          if (code === 10) {
            const mechanisms = reply.body.toString("utf8", 4).split("\0");
            if (!mechanisms.includes(scramMechanism))
              throw new UpstreamError(
                `the server at ${where(credential)} offers ${mechanisms.filter(Boolean).join(", ")}, not ${scramMechanism}`,
              );
            scram = startScram(credential.password);
            const data = Buffer.from(scram.clientFirst);
            const length = Buffer.alloc(4);
            length.writeInt32BE(data.length);
            socket.write(passwordMessage(Buffer.concat([cstring(scramMechanism), length, data])));
          } else if (code === 11 && scram) {
            socket.write(
              passwordMessage(Buffer.from(scram.clientFinal(reply.body.toString("utf8", 4)))),
            );
          } else if (code === 12 && scram) {
            scram.verifyServerFinal(reply.body.toString("utf8", 4));
          } else if ((code === 3 || code === 5) && !encrypted) {
            throw new UpstreamError(
              `the server at ${where(credential)} asks for a ${code === 3 ? "clear-text" : "md5"} password over an unencrypted connection; the sidecar sends those only over TLS (set the Connection's sslMode)`,
            );
          } else if (code === 3) {
            socket.write(passwordMessage(cstring(credential.password)));
          } else if (code === 5) {
            const salt = reply.body.subarray(4, 8);
            const inner = createHash("md5")
              .update(credential.password + credential.username)
              .digest("hex");
            const outer = createHash("md5").update(inner).update(salt).digest("hex");
            socket.write(passwordMessage(cstring(`md5${outer}`)));
          } else {
            throw new UpstreamError(
              `the server at ${where(credential)} asks for authentication method ${code}, which the sidecar does not speak`,
            );
          }
          break;
        }
        case "S":
          session.parameterStatuses.push(reply.frame);
          break;
        case "K":
          session.backendKey = {
            processId: reply.body.readInt32BE(0),
            secretKey: Buffer.from(reply.body.subarray(4)),
          };
          break;
        case "N":
          session.notices.push(reply.frame);
          break;
        case "E": {
          const fields = parseNoticeFields(reply.body);
          throw new UpstreamError(
            `the server at ${where(credential)} refused the run's login: ${fields.get("M") ?? "no message"}`,
            fields.get("C") ?? "08006",
          );
        }
        case "v":
          // NegotiateProtocolVersion: the server serves 3.0 without an option we never send.
          break;
        case "Z":
          session.status = reply.body.toString("latin1", 0, 1);
          socket.pause();
          return { ...session, socket, reader };
        default:
          throw new UpstreamError(
            `the server at ${where(credential)} sent an unexpected "${reply.type}" message during login`,
          );
      }
    }
  } catch (error) {
    if (error instanceof ScramError)
      throw new UpstreamError(
        `SCRAM with the server at ${where(credential)}: ${error.message}`,
        "28000",
      );
    throw error;
  } finally {
    clearTimeout(timer);
    socket.off("data", onData);
    socket.off("close", onEnd);
    socket.off("error", onEnd);
  }
}
