// Keeps the connection's credential from coming back to the graph: an upstream that echoes
// what it was sent (a JSON echo, a 401 page, WWW-Authenticate, a custom header) would otherwise
// hand the graph the very secret the sidecar exists to hold. Every form the value may take on
// the way back (as sent, the token after its scheme, Basic's password, base64, base64url,
// URL-encoded, JSON-escaped) is overwritten with "*" of the same length, so a body keeps its
// Content-Length and streams; only a suffix that may begin a form is held back between chunks.
import type { HttpCredential } from "../../../api/credentials.ts";

/** Shorter values would overwrite ordinary text; no credential worth the name is that short. */
const minSecretBytes = 8;
const star = 0x2a;
const nothing = Buffer.alloc(0);

/** The byte strings that must never reach the graph for this credential, longest first. */
export function credentialForms(credential: HttpCredential): Buffer[] {
  const secrets = new Set<string>();
  for (const value of Object.values(credential.headers)) {
    secrets.add(value);
    const [scheme, token] = splitScheme(value);
    if (token === undefined) continue;
    secrets.add(token);
    if (scheme === "basic") {
      const decoded = Buffer.from(token, "base64").toString();
      const colon = decoded.indexOf(":");
      secrets.add(decoded);
      if (colon !== -1) secrets.add(decoded.slice(colon + 1));
    }
  }
  const forms = new Set<string>();
  for (const secret of secrets) {
    forms.add(secret);
    forms.add(Buffer.from(secret).toString("base64"));
    forms.add(Buffer.from(secret).toString("base64url"));
    forms.add(encodeURIComponent(secret));
    forms.add(JSON.stringify(secret).slice(1, -1));
    forms.add(JSON.stringify(secret).slice(1, -1).replaceAll("/", "\\/"));
  }
  return [...forms]
    .map((form) => Buffer.from(form))
    .filter((form) => form.length >= minSecretBytes)
    .sort((a, b) => b.length - a.length);
}

function splitScheme(value: string): [string, string | undefined] {
  const match = /^([A-Za-z][A-Za-z0-9+.-]*) +(\S+)$/.exec(value.trim());
  return match ? [match[1]?.toLowerCase() ?? "", match[2]] : ["", undefined];
}

/** Overwrites every form in data, copying it first when anything is found; the count of hits. */
function overwrite(data: Buffer, forms: readonly Buffer[]): { data: Buffer; hits: number } {
  let out = data;
  let hits = 0;
  for (const form of forms) {
    for (let at = out.indexOf(form); at !== -1; at = out.indexOf(form, at + form.length)) {
      // The chunk may be a view of the upstream socket's buffer: never written in place.
      if (out === data) out = Buffer.from(data);
      out.fill(star, at, at + form.length);
      hits++;
    }
  }
  return { data: out, hits };
}

// Header values are latin1 strings: the forms as such, made once per credential.
const textForms = new WeakMap<readonly Buffer[], string[]>();

/** Overwrites every form in the response headers; the count of hits. */
export function scrubHeaders(
  headers: Record<string, string | string[]>,
  forms: readonly Buffer[],
): number {
  if (forms.length === 0) return 0;
  let texts = textForms.get(forms);
  if (!texts) {
    texts = forms.map((form) => form.toString("latin1"));
    textForms.set(forms, texts);
  }
  let hits = 0;
  const scrub = (value: string): string => {
    let scrubbed = value;
    for (const form of texts) {
      if (!scrubbed.includes(form)) continue;
      hits += scrubbed.split(form).length - 1;
      scrubbed = scrubbed.replaceAll(form, "*".repeat(form.length));
    }
    return scrubbed;
  };
  for (const name in headers) {
    const value = headers[name];
    if (value === undefined) continue;
    headers[name] = typeof value === "string" ? scrub(value) : value.map(scrub);
  }
  return hits;
}

/** A body's bytes with every form overwritten, as they stream. */
export class CredentialScrubber {
  /** Forms overwritten so far. */
  hits = 0;
  readonly #forms: readonly Buffer[];
  #held: Buffer = nothing;

  constructor(forms: readonly Buffer[]) {
    this.#forms = forms;
  }

  /** What of chunk can go on now; a suffix that may begin a form waits for the next one. */
  write(chunk: Buffer): Buffer {
    const data = this.#held.length ? Buffer.concat([this.#held, chunk]) : chunk;
    const { data: scrubbed, hits } = overwrite(data, this.#forms);
    this.hits += hits;
    const keep = this.#possibleStart(scrubbed);
    this.#held = keep ? Buffer.from(scrubbed.subarray(scrubbed.length - keep)) : nothing;
    return scrubbed.subarray(0, scrubbed.length - keep);
  }

  end(): Buffer {
    const rest = this.#held;
    this.#held = nothing;
    return rest;
  }

  /** The length of the longest suffix of data that is a proper prefix of some form. */
  #possibleStart(data: Buffer): number {
    let longest = 0;
    for (const form of this.#forms) {
      const first = form[0] as number;
      const from = Math.max(0, data.length - form.length + 1);
      for (let at = data.indexOf(first, from); at !== -1; at = data.indexOf(first, at + 1)) {
        const suffix = data.length - at;
        if (suffix <= longest) break;
        if (data.subarray(at).equals(form.subarray(0, suffix))) {
          longest = suffix;
          break;
        }
      }
    }
    return longest;
  }
}
