// The JSONPath subset of AccessPolicy masking.jsonPaths, and a matcher a streaming parser can ask
// "is the value at this path selected?" one key at a time, without the document.
//
// Supported: $, .name, ['name'] / ["name"], [N], [*], .*, and the descendant forms ..name, ..*
// and ..[…]. Filters, slices, unions and negative indices are refused: they need the whole
// document or the array's length, which a streaming masker does not have.

/** An object member name or an array index, from the root down to a value. */
export type PathKey = string | number;

export type JsonPathSelector =
  | { kind: "name"; name: string }
  | { kind: "index"; index: number }
  | { kind: "wildcard" };

export interface JsonPathSegment {
  /** `..`: the selector applies at any depth below, not only to direct children. */
  descendant: boolean;
  selector: JsonPathSelector;
}

/** An expression outside the supported subset; position is the 0-based index of the problem. */
export class JsonPathError extends Error {
  override name = "JsonPathError";
  readonly expression: string;
  readonly position: number;

  constructor(expression: string, position: number, problem: string) {
    const rest = position < expression.length ? JSON.stringify(expression.slice(position)) : "end";
    super(`JSONPath ${JSON.stringify(expression)} at position ${position} (${rest}): ${problem}`);
    this.expression = expression;
    this.position = position;
  }
}

const supportedSyntax = "use $, .name, ['name'], [N], [*], .* or ..name";

export function parseJsonPath(expression: string): JsonPathSegment[] {
  const cursor = new Cursor(expression);
  if (cursor.peek() !== "$") throw cursor.error("a JSONPath starts with $");
  cursor.advance(1);
  const segments: JsonPathSegment[] = [];
  while (!cursor.atEnd()) segments.push(parseSegment(cursor));
  return segments;
}

class Cursor {
  readonly expression: string;
  position = 0;

  constructor(expression: string) {
    this.expression = expression;
  }

  atEnd(): boolean {
    return this.position >= this.expression.length;
  }

  peek(offset = 0): string | undefined {
    return this.expression[this.position + offset];
  }

  advance(count: number): void {
    this.position += count;
  }

  expect(character: string, context: string): void {
    if (this.peek() !== character) throw this.error(`expected "${character}" ${context}`);
    this.advance(1);
  }

  error(problem: string): JsonPathError {
    return new JsonPathError(this.expression, this.position, problem);
  }
}

function parseSegment(cursor: Cursor): JsonPathSegment {
  if (cursor.peek() === "[") return { descendant: false, selector: parseBracketed(cursor) };
  if (cursor.peek() !== ".") throw cursor.error(`expected ".", ".." or "["; ${supportedSyntax}`);
  cursor.advance(1);
  if (cursor.peek() !== ".") return { descendant: false, selector: parseShorthand(cursor) };
  cursor.advance(1);
  const selector = cursor.peek() === "[" ? parseBracketed(cursor) : parseShorthand(cursor);
  return { descendant: true, selector };
}

/** What follows a dot: `*` or a member name. */
function parseShorthand(cursor: Cursor): JsonPathSelector {
  if (cursor.peek() === "*") {
    cursor.advance(1);
    return { kind: "wildcard" };
  }
  const start = cursor.position;
  if (!isNameStart(cursor.peek())) throw cursor.error(`expected a member name or "*"`);
  while (isNameCharacter(cursor.peek())) cursor.advance(1);
  return { kind: "name", name: cursor.expression.slice(start, cursor.position) };
}

function isNameStart(character: string | undefined): boolean {
  return character !== undefined && /[A-Za-z_\u0080-\uffff]/.test(character);
}

function isNameCharacter(character: string | undefined): boolean {
  return character !== undefined && /[\w\u0080-\uffff-]/.test(character);
}

function parseBracketed(cursor: Cursor): JsonPathSelector {
  cursor.advance(1);
  const selector = parseBracketSelector(cursor);
  if (cursor.peek() === ",") throw cursor.error(`unions are not supported; ${supportedSyntax}`);
  if (cursor.peek() === ":") throw cursor.error(`slices are not supported; ${supportedSyntax}`);
  cursor.expect("]", "to close the bracket");
  return selector;
}

function parseBracketSelector(cursor: Cursor): JsonPathSelector {
  const character = cursor.peek();
  if (character === "*") {
    cursor.advance(1);
    return { kind: "wildcard" };
  }
  if (character === "'" || character === '"') return { kind: "name", name: parseQuoted(cursor) };
  if (character !== undefined && /\d/.test(character)) {
    return { kind: "index", index: parseIndex(cursor) };
  }
  if (character === "-") {
    throw cursor.error(
      "negative indices are not supported (a streaming masker does not know an array's length)",
    );
  }
  if (character === "?") throw cursor.error(`filters are not supported; ${supportedSyntax}`);
  if (character === ":") throw cursor.error(`slices are not supported; ${supportedSyntax}`);
  throw cursor.error(`expected '…', "…", an index or "*" inside brackets`);
}

/** A quoted member name; backslash escapes only the quote and the backslash. */
function parseQuoted(cursor: Cursor): string {
  const quote = cursor.peek();
  cursor.advance(1);
  let name = "";
  for (;;) {
    const character = cursor.peek();
    if (character === undefined) throw cursor.error(`expected ${quote} to end the name`);
    if (character === quote) break;
    if (character === "\\") {
      const escaped = cursor.peek(1);
      if (escaped !== quote && escaped !== "\\") {
        throw cursor.error(`only \\${quote} and \\\\ are escapes in a quoted name`);
      }
      name += escaped;
      cursor.advance(2);
    } else {
      name += character;
      cursor.advance(1);
    }
  }
  cursor.advance(1);
  return name;
}

function parseIndex(cursor: Cursor): number {
  const start = cursor.position;
  while (/\d/.test(cursor.peek() ?? "")) cursor.advance(1);
  const digits = cursor.expression.slice(start, cursor.position);
  if (digits.length > 1 && digits.startsWith("0")) {
    cursor.position = start;
    throw cursor.error("an index has no leading zeros");
  }
  const index = Number(digits);
  if (!Number.isSafeInteger(index)) {
    cursor.position = start;
    throw cursor.error("the index is too large");
  }
  return index;
}

/** The positions reached in every expression, as indices into the matcher's flattened segments;
 * empty once no expression can match below. */
export type JsonPathState = readonly number[];

/** Whether a value's path is selected by any of several expressions, as one NFA. */
export class JsonPathMatcher {
  /** The state of the document's root value. */
  readonly start: JsonPathState;
  /** Every expression's segments in turn, each followed by undefined, its accepting position. */
  readonly #positions: (JsonPathSegment | undefined)[] = [];

  /** Throws JsonPathError for the first expression outside the subset. */
  constructor(expressions: readonly string[]) {
    const start: number[] = [];
    for (const expression of expressions) {
      start.push(this.#positions.length);
      this.#positions.push(...parseJsonPath(expression), undefined);
    }
    this.start = start;
  }

  /** The state of the child at key of a value in state. */
  step(state: JsonPathState, key: PathKey): JsonPathState {
    if (state.length === 0) return state;
    const next: number[] = [];
    for (const position of state) {
      const segment = this.#positions[position];
      if (segment === undefined) continue;
      if (segment.descendant) addOnce(next, position);
      if (selects(segment.selector, key)) addOnce(next, position + 1);
    }
    return next;
  }

  /** Whether a value in state is selected by some expression. */
  accepts(state: JsonPathState): boolean {
    return state.some((position) => this.#positions[position] === undefined);
  }

  /** Whether nothing below a value in state can be selected. */
  isDead(state: JsonPathState): boolean {
    return state.every((position) => this.#positions[position] === undefined);
  }

  matches(path: readonly PathKey[]): boolean {
    return this.accepts(path.reduce((state, key) => this.step(state, key), this.start));
  }
}

function selects(selector: JsonPathSelector, key: PathKey): boolean {
  switch (selector.kind) {
    case "wildcard":
      return true;
    case "name":
      return key === selector.name;
    case "index":
      return key === selector.index;
  }
}

function addOnce(positions: number[], position: number): void {
  if (!positions.includes(position)) positions.push(position);
}
