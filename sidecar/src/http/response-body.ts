// Sends an upstream's response body to the graph when it must be changed on the way: masked by
// the grant (JSON by the structural masker, JSON lines line by line, text by the detectors),
// and scrubbed of the connection's credential. A compressed body is decoded first. The result
// is held up to 1 MiB to send an exact Content-Length, chunked past that; nothing else is held,
// so memory stays bounded whatever the upstream sends.
//
// Whether a body can be masked is decided from its headers alone (media type, charset,
// encoding), never from what the graph may have steered into it: such a body is withheld, or
// passed by `unmaskable: Pass`. A body of a kind the sidecar masks that then fails (not the
// JSON it claims, a string or line past the limits) is withheld whatever the grant says: before
// the headers it is a 502, after them the response is cut.

import type { ServerResponse } from "node:http";
import type { Readable, Transform } from "node:stream";
import { createBrotliDecompress, createGunzip, createInflate } from "node:zlib";
import { errorMessage } from "../../../api/errors.ts";
import type { Grant } from "../../../api/v1alpha1.ts";
import { type DetectorName, isDetectorName } from "../masking/detectors.ts";
import { JsonMasker, type MaskCounts } from "../masking/json-masker.ts";
import { JsonLinesMasker, TextMasker } from "../masking/line-maskers.ts";
import { CredentialScrubber } from "./credential-scrubber.ts";

/** Up to this much changed output is held to send an exact Content-Length. */
const bufferedBytes = 1024 * 1024;

/** Why a response was withheld: becomes the event's reason. */
export class MaskingRefusal extends Error {
  override name = "MaskingRefusal";
  readonly reason: "MaskingFailed" | "Unmaskable" | "UnsupportedEncoding";
  constructor(reason: MaskingRefusal["reason"], message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.reason = reason;
  }
}

/** A grant's masking of HTTP responses. */
export interface ResponseMasking {
  jsonPaths: readonly string[];
  detectors: readonly DetectorName[];
  /** Whether a response of a kind that cannot be masked goes through (`unmaskable: Pass`). */
  pass: boolean;
}

/** What a body goes through: the grant's masking, if any, and the credential's forms. */
export interface BodyChanges {
  masking: ResponseMasking | undefined;
  credentialForms: readonly Buffer[];
}

/** What was sent: the bytes, what was masked or scrubbed, and why it was passed unmasked. */
export interface SentBody {
  bytesOut: number;
  counts: MaskCounts & { credential?: number };
  passedUnmasked?: MaskingRefusal["reason"];
}

/** The grant's response masking, or undefined when it masks nothing in HTTP responses. */
export function maskingFor(masking: Grant["masking"]): ResponseMasking | undefined {
  const jsonPaths = masking?.jsonPaths ?? [];
  const detectors = (masking?.detectors ?? []).filter(isDetectorName);
  if (jsonPaths.length === 0 && detectors.length === 0) return undefined;
  return { jsonPaths, detectors, pass: masking?.unmaskable === "Pass" };
}

const jsonLinesTypes = new Set([
  "application/x-ndjson",
  "application/ndjson",
  "application/jsonl",
  "application/x-jsonlines",
  "application/jsonlines",
]);
const textTypes = new Set([
  "application/xml",
  "application/javascript",
  "application/x-www-form-urlencoded",
  "application/csv",
  "application/yaml",
  "application/x-yaml",
  "application/sql",
  "application/graphql",
]);

/** How a body of this Content-Type is masked, or why it cannot be. */
export type Treatment = "json" | "json-lines" | "text" | "json-or-text" | { unmaskable: string };

export function treatmentOf(
  contentType: string | string[] | undefined,
  masking: ResponseMasking,
): Treatment {
  if (contentType === undefined || contentType === "") return { unmaskable: "no Content-Type" };
  // Two types would let the graph's client and the sidecar read the body differently.
  if (typeof contentType !== "string" || contentType.includes(",")) {
    return { unmaskable: "more than one Content-Type" };
  }
  const [essence = "", ...parameters] = contentType.split(";");
  const type = essence.trim().toLowerCase();
  for (const parameter of parameters) {
    const [name, value = ""] = parameter.split("=").map((part) => part.trim().toLowerCase());
    const charset = value.replace(/^"|"$/g, "");
    if (name === "charset" && charset !== "utf-8" && charset !== "utf8" && charset !== "us-ascii") {
      return { unmaskable: `charset ${charset}, which the detectors cannot read` };
    }
  }
  if (type === "application/json" || type.endsWith("+json")) return "json";
  if (jsonLinesTypes.has(type)) return "json-lines";
  const text = type.startsWith("text/") || textTypes.has(type) || type.endsWith("+xml");
  if (!text)
    return { unmaskable: `${type || "an empty media type"} is not a type the sidecar masks` };
  if (masking.jsonPaths.length === 0) return "text";
  // JSON paths select JSON: text/plain may be JSON, other text cannot have them applied.
  return type === "text/plain"
    ? "json-or-text"
    : { unmaskable: `JSON paths cannot select in ${type}` };
}

/** A body change fed chunk by chunk: a masker or the credential scrubber. */
interface BodyTransform {
  write(chunk: Buffer): Buffer;
  end(): Buffer;
}

/** text/plain under JSON paths: masked as JSON if it is JSON, withheld if it is not. */
class JsonOrTextMasker implements BodyTransform {
  #json: JsonMasker | undefined;
  readonly #masking: ResponseMasking;

  constructor(masking: ResponseMasking) {
    this.#masking = masking;
  }

  get counts(): MaskCounts {
    return this.#json?.counts ?? {};
  }

  write(chunk: Buffer): Buffer {
    if (!this.#json) {
      const first = chunk.find(
        (byte) => byte !== 0x20 && byte !== 0x09 && byte !== 0x0d && byte !== 0x0a,
      );
      if (first === undefined) return chunk;
      if (first !== 0x7b && first !== 0x5b) {
        throw new Error("the text/plain body is not JSON, so the grant's JSON paths cannot apply");
      }
      this.#json = jsonMasker(this.#masking);
    }
    return this.#json.write(chunk);
  }

  end(): Buffer {
    return this.#json?.end() ?? Buffer.alloc(0);
  }
}

function jsonMasker(masking: ResponseMasking): JsonMasker {
  return new JsonMasker({ jsonPaths: masking.jsonPaths, detectors: masking.detectors });
}

function maskerFor(
  treatment: Exclude<Treatment, { unmaskable: string }>,
  masking: ResponseMasking,
): BodyTransform & { counts: MaskCounts } {
  switch (treatment) {
    case "json":
      return jsonMasker(masking);
    case "json-lines":
      return new JsonLinesMasker(() => jsonMasker(masking));
    case "text":
      return new TextMasker(masking.detectors);
    case "json-or-text":
      return new JsonOrTextMasker(masking);
  }
}

// Headers that describe the upstream's bytes, which a change makes wrong.
const describesBody = [
  "content-length",
  "content-encoding",
  "etag",
  "digest",
  "content-md5",
  "accept-ranges",
];

/** Whether a body with these headers must go through sendChanged rather than stream as is. */
export function needsChanging(
  encoding: string | string[] | undefined,
  changes: BodyChanges,
): boolean {
  return (
    changes.masking !== undefined || (changes.credentialForms.length > 0 && !isIdentity(encoding))
  );
}

export async function sendChanged(
  status: number,
  headers: Record<string, string | string[]>,
  body: Readable,
  res: ServerResponse,
  changes: BodyChanges,
): Promise<SentBody> {
  let bytesOut = 0;
  const write = async (chunk: Buffer) => {
    if (chunk.length === 0) return;
    bytesOut += chunk.length;
    if (!res.write(chunk)) await drained(res);
  };
  const encoding = String(headers["content-encoding"] ?? "identity");
  const source = decoded(body, encoding);
  const { masking, credentialForms } = changes;
  let masker: (BodyTransform & { counts: MaskCounts }) | undefined;
  let passedUnmasked: MaskingRefusal | undefined;
  if (masking) {
    const treatment = treatmentOf(headers["content-type"], masking);
    const refusal = !source
      ? new MaskingRefusal(
          "UnsupportedEncoding",
          `the response is ${encoding}-encoded, which the sidecar cannot decode to mask`,
        )
      : typeof treatment === "object"
        ? new MaskingRefusal("Unmaskable", `the response cannot be masked: ${treatment.unmaskable}`)
        : undefined;
    if (refusal && !masking.pass) {
      body.resume();
      throw refusal;
    }
    passedUnmasked = refusal;
    if (!refusal)
      masker = maskerFor(treatment as Exclude<Treatment, { unmaskable: string }>, masking);
  }
  if (!source) {
    if (credentialForms.length > 0) {
      body.resume();
      throw new MaskingRefusal(
        "UnsupportedEncoding",
        `the response is ${encoding}-encoded, which the sidecar cannot decode to keep the connection's credential out of it`,
      );
    }
    // Passed as the upstream sent it, encoding, length and all.
    res.writeHead(status, headers);
    for await (const chunk of body as AsyncIterable<Buffer>) await write(chunk);
    res.end();
    return {
      bytesOut,
      counts: {},
      ...(passedUnmasked ? { passedUnmasked: passedUnmasked.reason } : {}),
    };
  }
  const scrubber = credentialForms.length > 0 ? new CredentialScrubber(credentialForms) : undefined;
  const transforms: BodyTransform[] = [masker, scrubber].filter((t) => t !== undefined);
  const change = (run: (transform: BodyTransform, input: Buffer) => Buffer, chunk: Buffer) => {
    try {
      return transforms.reduce((input, transform) => run(transform, input), chunk);
    } catch (error) {
      throw new MaskingRefusal(
        "MaskingFailed",
        `the response could not be masked: ${errorMessage(error)}`,
        { cause: error },
      );
    }
  };
  const outgoing = { ...headers };
  for (const name of describesBody) delete outgoing[name];
  const held: Buffer[] = [];
  let heldBytes = 0;
  for await (const chunk of source as AsyncIterable<Buffer>) {
    const out = change((transform, input) => transform.write(input), chunk);
    if (res.headersSent) {
      await write(out);
      continue;
    }
    held.push(out);
    heldBytes += out.length;
    if (heldBytes > bufferedBytes) {
      res.writeHead(status, outgoing);
      for (const part of held.splice(0)) await write(part);
    }
  }
  // Each transform's tail goes through the ones after it.
  const tail = change(
    (transform, input) => Buffer.concat([transform.write(input), transform.end()]),
    Buffer.alloc(0),
  );
  if (res.headersSent) {
    bytesOut += tail.length;
    res.end(tail);
  } else {
    const whole = Buffer.concat([...held, tail]);
    res.writeHead(status, { ...outgoing, "content-length": String(whole.length) });
    bytesOut += whole.length;
    res.end(whole);
  }
  const counts: SentBody["counts"] = { ...masker?.counts };
  if (scrubber?.hits) counts.credential = scrubber.hits;
  return { bytesOut, counts, ...(passedUnmasked ? { passedUnmasked: passedUnmasked.reason } : {}) };
}

export function graphLeftError(): Error {
  return new Error("the graph closed the connection");
}

/** Resolves when res takes more; rejects when the graph went away, which no drain follows. */
function drained(res: ServerResponse): Promise<void> {
  return new Promise((resolve, reject) => {
    if (res.destroyed) return reject(graphLeftError());
    const settle = (error?: Error) => {
      res.off("drain", onDrain).off("close", onClose);
      if (error) reject(error);
      else resolve();
    };
    const onDrain = () => settle();
    const onClose = () => settle(graphLeftError());
    res.on("drain", onDrain).on("close", onClose);
  });
}

function isIdentity(encoding: string | string[] | undefined): boolean {
  const value = String(encoding ?? "")
    .trim()
    .toLowerCase();
  return value === "" || value === "identity";
}

/** The body decoded, or undefined for an encoding the sidecar cannot decode. */
function decoded(body: Readable, encoding: string): Readable | undefined {
  if (isIdentity(encoding)) return body;
  switch (encoding.trim().toLowerCase()) {
    case "gzip":
    case "x-gzip":
      return through(body, createGunzip());
    case "deflate":
      return through(body, createInflate());
    case "br":
      return through(body, createBrotliDecompress());
    default:
      return undefined;
  }
}

/** body piped into decoder, with body's errors ending the decoder too. */
function through(body: Readable, decoder: Transform): Readable {
  body.once("error", (error) => decoder.destroy(error));
  return body.pipe(decoder);
}
