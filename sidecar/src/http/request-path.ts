// Request paths as the grant's rules see them: percent-decoded, dot-segments resolved and
// duplicate slashes dropped BEFORE matching, so `/v1/docs/../admin` or `/v1//docs/%2e%2e/admin`
// is matched as `/admin`. The upstream then receives exactly the path that was matched. Forms
// that some servers read differently from the matcher are refused: `;` path parameters
// (Tomcat, Spring and Jetty read `..;` as `..`), a second layer of percent-encoding, and
// characters that Unicode compatibility folds into dots or separators.

export type NormalizedPath =
  | {
      ok: true;
      /** Decoded segments joined by "/": what rules match. */
      path: string;
      /** The same path, percent-encoded again: what the upstream receives. */
      encoded: string;
    }
  | { ok: false; reason: string };

// Bytes a decoded segment may not hold: a slash or backslash would change the path's shape
// after matching (servers split on them), and control characters have no place in a path.
function hasForbiddenCharacter(decoded: string): boolean {
  for (let i = 0; i < decoded.length; i++) {
    const code = decoded.charCodeAt(i);
    if (code === 0x2f || code === 0x5c || code < 0x20 || code === 0x7f) return true;
  }
  return false;
}
const strictUtf8 = new TextDecoder("utf-8", { fatal: true });
/** No API needs more; it bounds the work of matching a path against globs. */
export const maxPathSegments = 512;

// Segments of characters that neither decoding nor re-encoding changes, none of them "." or
// empty or ";": such a path is already normalized (most are), and short enough to be in bounds.
const plainPath = /^(?:\/[A-Za-z0-9\-_~!$&'()*+,=:@]+)*\/?$/;
/** What a segment that still holds an escape after decoding was: encoded twice. */
const percentEscape = /%[0-9a-fA-F]{2}/;
/** What NFKC may fold a look-alike into that would change how a server splits the path. */
const foldsIntoStructure = /[./\\;%]/;

/** Normalizes the path of an origin-form request target (the part before "?"). */
export function normalizePath(rawPath: string): NormalizedPath {
  if (rawPath.length <= maxPathSegments && rawPath.startsWith("/") && plainPath.test(rawPath)) {
    return { ok: true, path: rawPath, encoded: rawPath };
  }
  if (!rawPath.startsWith("/")) return refuse("the path does not start with /");
  if (rawPath.includes("\\")) return refuse("the path holds a backslash");
  const segments: string[] = [];
  const raw = rawPath.split("/").slice(1);
  if (raw.length > maxPathSegments)
    return refuse(`the path has more than ${maxPathSegments} segments`);
  for (const [index, rawSegment] of raw.entries()) {
    const decoded = decodeSegment(rawSegment);
    if (decoded === undefined)
      return refuse(`segment "${rawSegment}" is not valid percent-encoded UTF-8`);
    if (hasForbiddenCharacter(decoded)) {
      return refuse(`segment "${rawSegment}" decodes to a slash, backslash or control character`);
    }
    if (decoded.includes(";")) {
      return refuse(
        `segment "${rawSegment}" holds ";", a path parameter some servers strip (reading "..;" as "..")`,
      );
    }
    if (percentEscape.test(decoded)) {
      return refuse(`segment "${rawSegment}" is percent-encoded twice`);
    }
    const folded = decoded.normalize("NFKC");
    if (folded !== decoded && foldsIntoStructure.test(folded)) {
      return refuse(
        `segment "${rawSegment}" holds characters that Unicode folds into "${folded}", which some servers read as path structure`,
      );
    }
    const last = index === raw.length - 1;
    if (decoded === "..") {
      // RFC 3986 remove_dot_segments: ".." at the root stays at the root.
      segments.pop();
      if (last) segments.push("");
    } else if (decoded === "." || decoded === "") {
      if (last) segments.push("");
    } else {
      segments.push(decoded);
    }
  }
  const path = `/${segments.join("/")}`.replace(/\/+$/, "/");
  const encoded = `/${segments.map(encodeSegment).join("/")}`.replace(/\/+$/, "/");
  return { ok: true, path, encoded };
}

function refuse(reason: string): NormalizedPath {
  return { ok: false, reason };
}

function decodeSegment(segment: string): string | undefined {
  if (/^[\x20-\x7e]*$/.test(segment) && !segment.includes("%")) return segment;
  const bytes: number[] = [];
  for (let i = 0; i < segment.length; i++) {
    const char = segment.charCodeAt(i);
    if (char === 0x25) {
      const hex = segment.slice(i + 1, i + 3);
      if (!/^[0-9a-fA-F]{2}$/.test(hex)) return undefined;
      bytes.push(Number.parseInt(hex, 16));
      i += 2;
    } else if (char <= 0xff) {
      // Node reads a request target as latin1: each character is one byte of the wire.
      bytes.push(char);
    } else {
      return undefined;
    }
  }
  try {
    return strictUtf8.decode(Uint8Array.from(bytes));
  } catch {
    return undefined;
  }
}

// pchar (RFC 3986): unreserved, sub-delims, ":" and "@" stay as they are; the rest is encoded.
function encodeSegment(segment: string): string {
  return encodeURIComponent(segment).replace(/%(2[46BC]|3[ABD]|40)/g, (sequence) =>
    String.fromCharCode(Number.parseInt(sequence.slice(1), 16)),
  );
}
