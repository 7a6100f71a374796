// A minimal DER (ASN.1) encoder: only the types an X.509 certificate needs. Hand-written so the
// sidecar does not load a full ASN.1/X.509 library (its resident memory is measured).

/** A complete DER encoding: tag, length and contents. */
export type Der = Buffer;

export function tlv(tag: number, ...contents: Uint8Array[]): Der {
  const body = Buffer.concat(contents);
  return Buffer.concat([Buffer.of(tag), encodeLength(body.length), body]);
}

/** Short form below 128, else 0x80 | byte count followed by the big-endian length. */
function encodeLength(length: number): Buffer {
  if (length < 0x80) return Buffer.of(length);
  const bytes: number[] = [];
  for (let rest = length; rest > 0; rest = Math.floor(rest / 256)) bytes.unshift(rest & 0xff);
  return Buffer.of(0x80 | bytes.length, ...bytes);
}

export function sequence(...items: Der[]): Der {
  return tlv(0x30, ...items);
}

/** DER orders a SET OF by its items' encodings. */
export function set(...items: Der[]): Der {
  return tlv(0x31, ...[...items].sort(Buffer.compare));
}

/** A non-negative INTEGER from big-endian bytes, in its shortest two's-complement form. */
export function unsignedInteger(bytes: Uint8Array): Der {
  let start = 0;
  while (start < bytes.length - 1 && bytes[start] === 0) start++;
  const digits = bytes.subarray(start);
  const needsPad = digits.length === 0 || (digits[0] ?? 0) >= 0x80;
  return tlv(0x02, needsPad ? Buffer.of(0) : Buffer.alloc(0), digits);
}

export function smallInteger(value: number): Der {
  if (!Number.isSafeInteger(value) || value < 0 || value > 0xffff_ffff) {
    throw new RangeError(`smallInteger takes 0..2^32-1, not ${value}`);
  }
  const bytes = Buffer.alloc(4);
  bytes.writeUInt32BE(value);
  return unsignedInteger(bytes);
}

export function objectIdentifier(dotted: string): Der {
  const arcs = dotted.split(".").map(Number);
  const [first = 0, second = 0, ...rest] = arcs;
  if (
    !/^[0-2](\.\d+)+$/.test(dotted) ||
    !arcs.every(Number.isSafeInteger) ||
    (first < 2 && second > 39)
  ) {
    throw new Error(`"${dotted}" is not an object identifier`);
  }
  return tlv(0x06, ...[first * 40 + second, ...rest].map(base128));
}

/** Big-endian base-128 digits, the high bit set on all but the last. */
function base128(arc: number): Buffer {
  const digits = [arc % 128];
  for (let rest = Math.floor(arc / 128); rest > 0; rest = Math.floor(rest / 128)) {
    digits.unshift(0x80 | (rest % 128));
  }
  return Buffer.from(digits);
}

export const nullValue: Der = Buffer.of(0x05, 0x00);

export function boolean(value: boolean): Der {
  return tlv(0x01, Buffer.of(value ? 0xff : 0x00));
}

/** A BIT STRING of whole bytes (keys, signatures). */
export function bitString(bytes: Uint8Array): Der {
  return tlv(0x03, Buffer.of(0), bytes);
}

/**
 * A named-bit BIT STRING (keyUsage): bit 0 is the first byte's high bit, and DER drops
 * trailing zero bits.
 */
export function namedBits(bits: number[]): Der {
  if (bits.length === 0) return tlv(0x03, Buffer.of(0));
  const last = Math.max(...bits);
  const bytes = Buffer.alloc(Math.floor(last / 8) + 1);
  for (const bit of bits) bytes[bit >> 3] = (bytes[bit >> 3] ?? 0) | (0x80 >> (bit & 7));
  return tlv(0x03, Buffer.of(7 - (last & 7)), bytes);
}

export function octetString(bytes: Uint8Array): Der {
  return tlv(0x04, bytes);
}

export function utf8String(text: string): Der {
  return tlv(0x0c, Buffer.from(text, "utf8"));
}

export function printableString(text: string): Der {
  if (!/^[A-Za-z0-9 '()+,\-./:=?]*$/.test(text)) {
    throw new Error(`${JSON.stringify(text)} has characters a PrintableString cannot hold`);
  }
  return tlv(0x13, Buffer.from(text, "ascii"));
}

/** RFC 5280 4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050; whole seconds, UTC. */
export function time(date: Date): Der {
  const year = date.getUTCFullYear();
  if (year < 1950 || year > 9999) throw new RangeError(`${date.toISOString()} is out of range`);
  const digits = date
    .toISOString()
    .replace(/\.\d{3}Z$/, "Z")
    .replace(/[-:T]/g, "");
  return year < 2050 ? tlv(0x17, Buffer.from(digits.slice(2))) : tlv(0x18, Buffer.from(digits));
}

/** [number] EXPLICIT: a constructed context tag wrapping a complete encoding. */
export function explicit(number: number, inner: Der): Der {
  return tlv(0xa0 | contextNumber(number), inner);
}

/** [number] IMPLICIT: the context tag replaces the type's own; contents are the type's. */
export function implicit(number: number, contents: Uint8Array, constructed = false): Der {
  return tlv((constructed ? 0xa0 : 0x80) | contextNumber(number), contents);
}

function contextNumber(number: number): number {
  if (!Number.isInteger(number) || number < 0 || number > 30) {
    throw new RangeError(`context tag [${number}] needs the long form, which is not supported`);
  }
  return number;
}
