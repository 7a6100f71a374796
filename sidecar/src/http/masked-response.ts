// Sends an upstream JSON response to the graph through the grant's masking: decoded first if
// the upstream compressed it anyway, masked as it streams, and sent with a corrected
// Content-Length when it fits the buffer (chunked past that). A body that cannot be masked is
// withheld (the default): before the headers it is a 502, after them the response is cut. A
// grant with `unmaskable: Pass` forwards it unmasked instead, while nothing masked was sent yet.

import type { IncomingHttpHeaders, ServerResponse } from "node:http";
import type { Readable, Transform } from "node:stream";
import { createBrotliDecompress, createGunzip, createInflate } from "node:zlib";
import type { Grant } from "../../../api/v1alpha1.ts";
import { isDetectorName } from "../masking/detectors.ts";
import { JsonMasker, type MaskCounts } from "../masking/json-masker.ts";

/** Up to this much masked output is held to send an exact Content-Length. */
const bufferedBytes = 1024 * 1024;

/** Why a response could not be masked: becomes the event's reason. */
export class MaskingRefusal extends Error {
  override name = "MaskingRefusal";
  readonly reason: "MaskingFailed" | "UnsupportedEncoding";
  constructor(reason: MaskingRefusal["reason"], message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.reason = reason;
  }
}

/** A grant's masking of HTTP responses. */
export interface ResponseMasking {
  /** A fresh masker, for one response. */
  masker(): JsonMasker;
  /** Whether a response that cannot be masked goes through unmasked (`unmaskable: Pass`). */
  pass: boolean;
}

/** What was sent: the bytes, what was masked, and why the body went through unmasked, if it did. */
export interface MaskedAnswer {
  bytesOut: number;
  counts: MaskCounts;
  passedUnmasked?: MaskingRefusal["reason"];
}

/** The grant's response masking, or undefined when it masks nothing in HTTP responses. */
export function maskingFor(masking: Grant["masking"]): ResponseMasking | undefined {
  const jsonPaths = masking?.jsonPaths ?? [];
  const detectors = (masking?.detectors ?? []).filter(isDetectorName);
  if (jsonPaths.length === 0 && detectors.length === 0) return undefined;
  return {
    masker: () => new JsonMasker({ jsonPaths, detectors }),
    pass: masking?.unmaskable === "Pass",
  };
}

/** JSON by its media type: application/json or any +json type. */
export function isJson(headers: IncomingHttpHeaders | Record<string, unknown>): boolean {
  const type =
    String(headers["content-type"] ?? "")
      .split(";")[0]
      ?.trim()
      .toLowerCase() ?? "";
  return type === "application/json" || type.endsWith("+json");
}

// Headers that describe the upstream's bytes, which masking changes.
const describesBody = [
  "content-length",
  "content-encoding",
  "etag",
  "digest",
  "content-md5",
  "accept-ranges",
];

export async function sendMasked(
  status: number,
  headers: Record<string, string | string[]>,
  body: Readable,
  res: ServerResponse,
  masking: ResponseMasking,
): Promise<MaskedAnswer> {
  let bytesOut = 0;
  const write = async (chunk: Buffer) => {
    bytesOut += chunk.length;
    if (!res.write(chunk)) await drained(res);
  };
  const encoding = String(headers["content-encoding"] ?? "identity");
  const source = decoded(body, encoding);
  if (!source) {
    const refusal = new MaskingRefusal(
      "UnsupportedEncoding",
      `the response is ${encoding}-encoded, which the sidecar cannot decode to mask`,
    );
    if (!masking.pass) {
      body.resume();
      throw refusal;
    }
    // Passed as the upstream sent it, encoding, length and all.
    res.writeHead(status, headers);
    for await (const chunk of body as AsyncIterable<Buffer>) await write(chunk);
    res.end();
    return { bytesOut, counts: {}, passedUnmasked: refusal.reason };
  }
  const masker = masking.masker();
  const outgoing = { ...headers };
  for (const name of describesBody) delete outgoing[name];
  const held: Buffer[] = [];
  // The decoded body as it came, kept while nothing is sent, for a grant that passes it.
  const unmasked: Buffer[] = [];
  let heldBytes = 0;
  let passing: MaskingRefusal | undefined;
  /** The masker's output, or, when it fails and the grant passes, the start of the pass. */
  const mask = async (run: () => Buffer): Promise<Buffer | undefined> => {
    try {
      return run();
    } catch (error) {
      const refusal = new MaskingRefusal(
        "MaskingFailed",
        `the response could not be masked: ${(error as Error).message}`,
        { cause: error },
      );
      if (!masking.pass || res.headersSent) throw refusal;
      passing = refusal;
      res.writeHead(status, outgoing);
      for (const part of unmasked.splice(0)) await write(part);
      return undefined;
    }
  };
  for await (const chunk of source as AsyncIterable<Buffer>) {
    if (passing) {
      await write(chunk);
      continue;
    }
    if (masking.pass && !res.headersSent) unmasked.push(chunk);
    const out = await mask(() => masker.write(chunk));
    // Undefined: the pass began, and sent what came so far, this chunk included.
    if (!out) continue;
    if (res.headersSent) {
      await write(out);
      continue;
    }
    held.push(out);
    heldBytes += out.length;
    if (heldBytes > bufferedBytes) {
      res.writeHead(status, outgoing);
      unmasked.length = 0;
      for (const part of held.splice(0)) await write(part);
    }
  }
  const tail = passing ? undefined : await mask(() => masker.end());
  if (passing) {
    res.end();
    return { bytesOut, counts: {}, passedUnmasked: passing.reason };
  }
  if (res.headersSent) {
    bytesOut += tail?.length ?? 0;
    res.end(tail);
  } else {
    const whole = Buffer.concat([...held, tail ?? Buffer.alloc(0)]);
    res.writeHead(status, { ...outgoing, "content-length": String(whole.length) });
    bytesOut += whole.length;
    res.end(whole);
  }
  return { bytesOut, counts: masker.counts };
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

/** The body decoded, or undefined for an encoding the sidecar cannot decode. */
function decoded(body: Readable, encoding: string): Readable | undefined {
  switch (encoding.trim().toLowerCase()) {
    case "identity":
    case "":
      return body;
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
