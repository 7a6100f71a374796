// The grant's HTTP rules: which action a method needs, and `*`/`**` path globs matched against
// normalized paths. Default deny: a request must need a granted action and, when the grant
// lists rules, match one of them by method and path.
import type { GrantClaim } from "../../../api/credentials.ts";

export type HttpAction = "read" | "write";

const actionOfMethod: Record<string, HttpAction> = {
  GET: "read",
  HEAD: "read",
  OPTIONS: "read",
  POST: "write",
  PUT: "write",
  PATCH: "write",
  DELETE: "write",
};

export type Decision =
  /** held: the grant holds the action for a human decision; forwarded only once approved. */
  | { allowed: true; rule: string; held?: HttpAction }
  | {
      allowed: false;
      rule?: string;
      reason: "MethodNotAllowed" | "ActionNotGranted" | "NoRuleMatched";
      message: string;
    };

export interface HttpPolicy {
  decide(method: string, path: string): Decision;
}

/** Compiles an HTTP grant once per credential; decide() then runs per request. */
export function compileHttpPolicy(grant: GrantClaim): HttpPolicy {
  const actions = new Set(grant.actions);
  const heldActions = new Set(grant.approval?.actions ?? []);
  const rules = (grant.http?.rules ?? []).map((rule) => ({
    methods: new Set<string>(rule.methods),
    globs: rule.paths.map(compileGlob),
    label: `${rule.methods.join(",")} ${rule.paths.join(" ")}`,
  }));
  return {
    decide(method, path) {
      const action = actionOfMethod[method];
      if (!action) {
        return {
          allowed: false,
          reason: "MethodNotAllowed",
          message: `method ${method} is never proxied`,
        };
      }
      if (!actions.has(action)) {
        return {
          allowed: false,
          reason: "ActionNotGranted",
          message: `${method} needs "${action}" on connection "${grant.connection}", which the run was not granted`,
        };
      }
      // A held action still has to match the rules: approval is never a way around them.
      const held = heldActions.has(action) ? { held: action } : {};
      if (rules.length === 0) {
        return { allowed: true, rule: `actions ${[...actions].join(",")}`, ...held };
      }
      const segments = segmentsOf(path);
      const matched = rules.find(
        (rule) => rule.methods.has(method) && rule.globs.some((glob) => glob(segments)),
      );
      if (matched) return { allowed: true, rule: matched.label, ...held };
      return {
        allowed: false,
        reason: "NoRuleMatched",
        message: `no rule of the grant on connection "${grant.connection}" allows ${method} ${path}`,
      };
    },
  };
}

function segmentsOf(path: string): string[] {
  return path.split("/").filter((segment) => segment !== "");
}

/** `**` matches any number of segments (none included), `*` within a segment any characters but "/". */
export function compileGlob(pattern: string): (segments: string[]) => boolean {
  const parts = segmentsOf(pattern).map((part) =>
    part === "**" ? ("**" as const) : segmentMatcher(part),
  );
  return (segments) => matchFrom(parts, segments, 0, 0, new Set());
}

type Part = "**" | ((segment: string) => boolean);

// `failed` remembers (part, segment) positions known not to match: with it, patterns with
// several "**" stay polynomial in the path's length however the graph shapes its paths.
function matchFrom(
  parts: Part[],
  segments: string[],
  p: number,
  s: number,
  failed: Set<number>,
): boolean {
  const key = p * (segments.length + 1) + s;
  if (failed.has(key)) return false;
  const part = parts[p];
  let matched: boolean;
  if (part === undefined) matched = s === segments.length;
  else if (part === "**") {
    matched =
      matchFrom(parts, segments, p + 1, s, failed) ||
      (s < segments.length && matchFrom(parts, segments, p, s + 1, failed));
  } else {
    const segment = segments[s];
    matched =
      segment !== undefined && part(segment) && matchFrom(parts, segments, p + 1, s + 1, failed);
  }
  if (!matched) failed.add(key);
  return matched;
}

function segmentMatcher(part: string): (segment: string) => boolean {
  if (!part.includes("*")) return (segment) => segment === part;
  const literals = part.split("*");
  return (segment) => !segment.includes("/") && matchesStars(literals, segment);
}

// Each literal between the prefix and the suffix found leftmost: a regex with k "*" backtracks
// in the segment's length to the power k (15 s for "*a*a*a*a*b" against 200 "a").
function matchesStars(literals: string[], segment: string): boolean {
  const first = literals[0] as string;
  const last = literals.at(-1) as string;
  const end = segment.length - last.length;
  if (end < first.length || !segment.startsWith(first) || !segment.endsWith(last)) return false;
  let from = first.length;
  for (const literal of literals.slice(1, -1)) {
    const found = segment.indexOf(literal, from);
    if (found < 0 || found + literal.length > end) return false;
    from = found + literal.length;
  }
  return true;
}
