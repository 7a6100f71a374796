// Sends an upstream JSON response to the graph through the grant's masking: decoded first if
// the upstream compressed it anyway, masked as it streams, and sent with a corrected
// Content-Length when it fits the buffer (chunked past that). A body that cannot be masked is
// never passed on: before the headers it is a 502, after them the response is cut.

import { once } from "node:events";
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

/** The masker for a grant's masking, or undefined when it masks nothing in HTTP responses. */
export function maskerFor(masking: Grant["masking"]): (() => JsonMasker) | undefined {
  const jsonPaths = masking?.jsonPaths ?? [];
  const detectors = (masking?.detectors ?? []).filter(isDetectorName);
  if (jsonPaths.length === 0 && detectors.length === 0) return undefined;
  return () => new JsonMasker({ jsonPaths, detectors });
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
  masker: JsonMasker,
): Promise<{ bytesOut: number; counts: MaskCounts }> {
  const source = decoded(body, String(headers["content-encoding"] ?? "identity"));
  const outgoing = { ...headers };
  for (const name of describesBody) delete outgoing[name];
  const held: Buffer[] = [];
  let heldBytes = 0;
  let bytesOut = 0;
  const write = async (chunk: Buffer) => {
    bytesOut += chunk.length;
    if (!res.write(chunk)) await once(res, "drain");
  };
  const mask = (run: () => Buffer) => {
    try {
      return run();
    } catch (error) {
      throw new MaskingRefusal(
        "MaskingFailed",
        `the response could not be masked: ${(error as Error).message}`,
        {
          cause: error,
        },
      );
    }
  };
  for await (const chunk of source) {
    const out = mask(() => masker.write(chunk as Buffer));
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
  const tail = mask(() => masker.end());
  if (res.headersSent) {
    bytesOut += tail.length;
    res.end(tail);
  } else {
    const whole = Buffer.concat([...held, tail]);
    res.writeHead(status, { ...outgoing, "content-length": String(whole.length) });
    bytesOut += whole.length;
    res.end(whole);
  }
  return { bytesOut, counts: masker.counts };
}

function decoded(body: Readable, encoding: string): Readable {
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
      body.resume();
      throw new MaskingRefusal(
        "UnsupportedEncoding",
        `the response is ${encoding}-encoded, which the sidecar cannot decode to mask`,
      );
  }
}

/** body piped into decoder, with body's errors ending the decoder too. */
function through(body: Readable, decoder: Transform): Readable {
  body.once("error", (error) => decoder.destroy(error));
  return body.pipe(decoder);
}
