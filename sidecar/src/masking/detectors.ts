// Detectors for sensitive values in free text (AccessPolicy masking.detectors), and the masking
// of every match with a redaction that names what was found but never what it was.
//
// Detectors run one after another over the text, in the order of detectorNames, whatever order
// a policy lists them in: a match is replaced before later detectors look, so the detector
// listed first wins an overlap. Whole structures go first (a PEM block or a JWT holds base64
// that looks like keys, cards or phones), then tokens with a fixed shape (AWS key, IBAN, email),
// then bare digit patterns from the most to the least specific (card, SSN, phone). No
// redaction contains a digit or an "@", so no later detector matches inside one.
//
// Every pattern runs in linear time: no nested quantifier can split the same text two ways, and
// a lookbehind keeps a match from starting in the middle of a run the pattern already refused.

export const detectorNames = [
  "private-key",
  "jwt",
  "aws-access-key",
  "iban",
  "email",
  "credit-card",
  "us-ssn",
  "phone",
] as const;
export type DetectorName = (typeof detectorNames)[number];

export type DetectorCounts = Partial<Record<DetectorName, number>>;

export interface MaskedText {
  text: string;
  /** Matches replaced, per detector; detectors that found nothing are absent. */
  counts: DetectorCounts;
}

/** The fixed text that replaces a masked value: `[MASKED:credit-card]`, `[MASKED:json-path]`. */
export function redaction(kind: string): string {
  return `[MASKED:${kind}]`;
}

export function isDetectorName(name: string): name is DetectorName {
  return (detectorNames as readonly string[]).includes(name);
}

/** Replaces every match of the given detectors in text with `[MASKED:<detector>]`. */
export function maskString(text: string, detectors: readonly DetectorName[]): MaskedText {
  const counts: DetectorCounts = {};
  let masked = text;
  for (const name of detectorNames) {
    const detector = detectorsByName[name];
    if (!detectors.includes(name) || !detector.hint.test(masked)) continue;
    const result = detector.mask(masked, redaction(name));
    if (result.count === 0) continue;
    masked = result.text;
    counts[name] = result.count;
  }
  return { text: masked, counts };
}

interface MaskResult {
  text: string;
  count: number;
}

type Masker = (text: string, replacement: string) => MaskResult;

interface Detector {
  /** Something every match contains: a cheap test that skips the full pattern on most text. */
  hint: RegExp;
  mask: Masker;
}

/** Masks every match of pattern (global) that isSensitive confirms. */
function patternMasker(pattern: RegExp, isSensitive: (match: string) => boolean): Masker {
  return (text, replacement) => {
    let count = 0;
    const masked = text.replace(pattern, (match) => {
      if (!isSensitive(match)) return match;
      count++;
      return replacement;
    });
    return { text: masked, count };
  };
}

const always = () => true;

// --- private-key -------------------------------------------------------------------------------

const privateKeyBegin =
  /-----BEGIN ((?:RSA |EC |DSA |OPENSSH |ENCRYPTED |PGP )?PRIVATE KEY(?: BLOCK)?)-----/g;

/** A whole PEM block, BEGIN line to END line; a BEGIN without its END masks to the end of the
 * text, since a truncated key still gives most of the key away. */
function maskPrivateKeys(text: string, replacement: string): MaskResult {
  const begin = new RegExp(privateKeyBegin);
  let masked = "";
  let copiedUpTo = 0;
  let count = 0;
  for (let match = begin.exec(text); match; match = begin.exec(text)) {
    const endLine = `-----END ${match[1]}-----`;
    const endIndex = text.indexOf(endLine, begin.lastIndex);
    const blockEnd = endIndex < 0 ? text.length : endIndex + endLine.length;
    masked += text.slice(copiedUpTo, match.index) + replacement;
    copiedUpTo = blockEnd;
    begin.lastIndex = blockEnd;
    count++;
  }
  return { text: masked + text.slice(copiedUpTo), count };
}

// --- jwt ---------------------------------------------------------------------------------------

// Three base64url segments (a JWS), or five (a JWE); the header is JSON, so it starts "eyJ".
const jwtPattern = /(?<![\w-])eyJ[\w-]*(?:\.[\w-]*){2}(?:(?:\.[\w-]*){2})?(?![\w-])/g;

function hasJoseHeader(token: string): boolean {
  const header = Buffer.from(token.slice(0, token.indexOf(".")), "base64url").toString("utf8");
  // Most look-alikes fail here, cheaper than a parse that throws.
  if (!header.trimEnd().endsWith("}")) return false;
  try {
    const decoded: unknown = JSON.parse(header);
    return (
      typeof decoded === "object" &&
      decoded !== null &&
      "alg" in decoded &&
      typeof decoded.alg === "string"
    );
  } catch {
    return false;
  }
}

// --- aws-access-key ----------------------------------------------------------------------------

const awsAccessKeyPattern = /(?<![A-Za-z0-9])(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}(?![A-Za-z0-9])/g;

// --- iban --------------------------------------------------------------------------------------

// Country code and check digits, then the account either in one token or in groups of up to
// four after single spaces; the grouped form may run into a following word ("... 00 EURO"), so
// the longest prefix of groups that passes the check is what gets masked.
const ibanPattern =
  /(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?:[A-Z0-9]{11,30}|(?: [A-Z0-9]{1,4}){3,8})(?![A-Za-z0-9])/g;

function maskIban(text: string, replacement: string): MaskResult {
  let count = 0;
  const masked = text.replace(ibanPattern, (match) => {
    const groups = match.split(" ");
    for (let taken = groups.length; taken > 0; taken--) {
      if (!isValidIban(groups.slice(0, taken).join(""))) continue;
      count++;
      return [replacement, ...groups.slice(taken)].join(" ");
    }
    return match;
  });
  return { text: masked, count };
}

/** ISO 13616 length and the ISO 7064 mod-97-10 check: the rearranged number mod 97 is 1. */
function isValidIban(iban: string): boolean {
  if (iban.length < 15 || iban.length > 34) return false;
  const rearranged = iban.slice(4) + iban.slice(0, 4);
  let remainder = 0;
  for (const character of rearranged) {
    const value = Number.parseInt(character, 36);
    remainder = (remainder * (value < 10 ? 10 : 100) + value) % 97;
  }
  return remainder === 1;
}

// --- email -------------------------------------------------------------------------------------

// local@domain.tld: the common unquoted local part, dot-separated labels and a letter TLD.
// Addresses glued together ("a@b.cc_bob@example.com") are masked as one: the lookbehind keeps a
// match from starting inside the run, so a second address there would otherwise pass.
const emailDomain = String.raw`@(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,63}`;
const emailPattern = new RegExp(
  String.raw`(?<![\w.%+-])[\w.%+-]+${emailDomain}(?:[\w.%+-]*${emailDomain})*`,
  "g",
);

// --- credit-card -------------------------------------------------------------------------------

// Runs of digit groups joined by single spaces or dashes. A run glued to a word or to a decimal
// point (hashes, identifiers, 3.14159…) does not start a card.
const digitRunPattern = /(?<!\w|\d[.,])\d+(?:[ -]\d+)*/g;
const glueAfterRun = /^(?:\w|[.,]\d)/;

function maskCreditCards(text: string, replacement: string): MaskResult {
  let count = 0;
  const masked = text.replace(digitRunPattern, (run: string, offset: number) => {
    if (run.length < 13) return run;
    // A last group glued to what follows is part of a longer token, so no card may include it.
    const glued = glueAfterRun.test(text.slice(offset + run.length, offset + run.length + 2));
    const usableEnd = glued ? lastSeparatorIndex(run) : run.length;
    const result = maskCardsInRun(run, usableEnd, replacement);
    count += result.count;
    return result.text;
  });
  return { text: masked, count };
}

function lastSeparatorIndex(run: string): number {
  return Math.max(run.lastIndexOf(" "), run.lastIndexOf("-"));
}

/** Masks, left to right, the longest span of whole digit groups that is a card number; cards
 * end at or before usableEnd. */
function maskCardsInRun(run: string, usableEnd: number, replacement: string): MaskResult {
  const pieces: string[] = [];
  let copiedUpTo = 0;
  let groupStart = 0;
  while (groupStart < usableEnd) {
    const cardEnd = cardEndFrom(run, groupStart, usableEnd);
    if (cardEnd === undefined) {
      groupStart = nextGroupStart(run, groupStart);
      continue;
    }
    pieces.push(run.slice(copiedUpTo, groupStart), replacement);
    copiedUpTo = cardEnd;
    groupStart = cardEnd + 1;
  }
  if (pieces.length === 0) return { text: run, count: 0 };
  return { text: pieces.join("") + run.slice(copiedUpTo), count: pieces.length / 2 };
}

function nextGroupStart(run: string, groupStart: number): number {
  let index = groupStart;
  while (index < run.length && isDigit(run.charCodeAt(index))) index++;
  return index + 1;
}

/** The end of the longest card number starting at start, if any: whole groups, 13 to 19
 * digits, one kind of separator throughout, passing the Luhn check. */
function cardEndFrom(run: string, start: number, usableEnd: number): number | undefined {
  // Luhn doubles every second digit from the right, so which digits are doubled depends on where
  // the number stops: keep the sum for either choice while adding digits left to right.
  let sumDoublingEven = 0;
  let sumDoublingOdd = 0;
  let length = 0;
  let separator: string | undefined;
  let cardEnd: number | undefined;
  for (let index = start; index <= usableEnd; index++) {
    const code = index < usableEnd ? run.charCodeAt(index) : -1;
    if (isDigit(code)) {
      const digit = code - 48;
      const doubled = digit > 4 ? digit * 2 - 9 : digit * 2;
      sumDoublingEven += length % 2 === 0 ? doubled : digit;
      sumDoublingOdd += length % 2 === 0 ? digit : doubled;
      if (++length > 19) break;
      continue;
    }
    // The rightmost digit, at index length - 1, is never doubled.
    const sum = length % 2 === 0 ? sumDoublingEven : sumDoublingOdd;
    if (length >= 13 && sum % 10 === 0) cardEnd = index;
    separator ??= run[index];
    if (run[index] !== separator) break;
  }
  return cardEnd;
}

function isDigit(code: number): boolean {
  return code >= 48 && code <= 57;
}

// --- us-ssn ------------------------------------------------------------------------------------

// AAA-GG-SSSS, never area 000, 666 or 9xx, group 00 or serial 0000 (never issued), and not a
// piece of a longer dashed or dotted number.
const usSsnPattern =
  /(?<!\w|\d[-.,])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?!\w|[-.,]\d)/g;

// --- phone -------------------------------------------------------------------------------------

// E.164 (+ and 8-15 digits, compact or in space/dot/dash groups) and North American forms:
// (415) 555-0132, 415-555-0132, 415.555.0132, 1-800-555-0199, +1 (415) 555-0132. Bare digit
// strings are left alone (identifiers, timestamps), and so is anything glued to a word or to a
// longer dotted or dashed number.
const phonePattern = new RegExp(
  String.raw`(?<![\w+.-])` +
    String.raw`(?:\+\d{8,15}` +
    String.raw`|\+\d{1,3}(?:[ .-]\d{1,6}){1,5}` +
    String.raw`|(?:\+?1[ .-]?)?(?:\(\d{3}\) ?|\d{3}[ .-])\d{3}[ .-]\d{4})` +
    String.raw`(?!\w|[.-]\d)`,
  "g",
);

function hasPhoneDigitCount(match: string): boolean {
  const digits = match.replace(/\D/g, "").length;
  return digits >= 8 && digits <= 15;
}

const detectorsByName: Record<DetectorName, Detector> = {
  "private-key": { hint: /-----BEGIN /, mask: maskPrivateKeys },
  jwt: { hint: /eyJ/, mask: patternMasker(jwtPattern, hasJoseHeader) },
  "aws-access-key": { hint: /A[KSBC][IC]A/, mask: patternMasker(awsAccessKeyPattern, always) },
  iban: { hint: /\d/, mask: maskIban },
  email: { hint: /@/, mask: patternMasker(emailPattern, always) },
  "credit-card": { hint: /\d/, mask: maskCreditCards },
  "us-ssn": { hint: /\d-\d/, mask: patternMasker(usSsnPattern, always) },
  phone: { hint: /\d/, mask: patternMasker(phonePattern, hasPhoneDigitCount) },
};
