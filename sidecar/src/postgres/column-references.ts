// Masked columns are found in results by name (RowDescription). A statement can carry a masked
// column's value under another name: an alias, an expression, a subquery or CTE that renames it,
// a whole-row reference (row_to_json(u)), a column alias list. Such a statement "hides" masked
// columns, and then every column of its result is masked, whatever it is called.

type Node = Record<string, unknown>;

/** True when a result column could carry a masked column's value under another name. */
export function hidesMaskedColumns(statement: Node, masked: ReadonlySet<string>): boolean {
  if (masked.size === 0) return false;
  const type = Object.keys(statement)[0] ?? "";
  const root = (statement[type] ?? {}) as Node;
  const top = outputList(type, root);
  const relations = relationNames(root);
  // The top level's own references: a bare column in the output keeps its name, and filters
  // (WHERE, GROUP BY, ORDER BY…) output nothing.
  const safe = new Set<unknown>();
  for (const target of top) {
    const entry = target.ResTarget as Node | undefined;
    const value = entry?.val as Node | undefined;
    const reference = value?.ColumnRef as Node | undefined;
    const name = reference && lastField(reference);
    if (reference && name && !isStar(reference) && (!entry?.name || entry.name === name)) {
      if (relations.has(name) && fieldCount(reference) === 1) return true;
      safe.add(value);
    } else if (reference && isStar(reference)) safe.add(value);
  }
  const stack: unknown[] = [root];
  while (stack.length > 0) {
    const value = stack.pop();
    if (Array.isArray(value)) {
      stack.push(...value);
      continue;
    }
    if (typeof value !== "object" || value === null || safe.has(value)) continue;
    const node = value as Node;
    const reference = node.ColumnRef as Node | undefined;
    if (reference) {
      const name = lastField(reference);
      if (isStar(reference) && fieldCount(reference) > 0) return true;
      if (name && masked.has(name.toLowerCase())) return true;
      if (name && fieldCount(reference) === 1 && relations.has(name)) return true;
    }
    const alias = (node.alias ?? node.Alias) as Node | undefined;
    if (Array.isArray(alias?.colnames) && alias.colnames.length > 0) return true;
    if (Array.isArray(node.aliascolnames) && node.aliascolnames.length > 0) return true;
    for (const [key, child] of Object.entries(node)) {
      if (value === root && filterClauses.has(key)) continue;
      stack.push(child);
    }
  }
  return false;
}

const filterClauses = new Set(["whereClause", "groupClause", "havingClause", "sortClause"]);

function outputList(type: string, node: Node): Node[] {
  const list =
    type === "SelectStmt"
      ? node.targetList
      : ((node.returningClause as Node | undefined)?.exprs ?? node.returningList);
  return Array.isArray(list) ? (list as Node[]) : [];
}

/** Names a whole-row reference could use: relations and their aliases. */
function relationNames(root: Node): Set<string> {
  const names = new Set<string>();
  const stack: unknown[] = [root];
  while (stack.length > 0) {
    const value = stack.pop();
    if (Array.isArray(value)) {
      stack.push(...value);
      continue;
    }
    if (typeof value !== "object" || value === null) continue;
    const node = value as Node;
    if (typeof node.relname === "string") names.add(node.relname);
    const alias = node.alias as Node | undefined;
    if (typeof alias?.aliasname === "string") names.add(alias.aliasname);
    if (typeof node.ctename === "string") names.add(node.ctename);
    stack.push(...Object.values(node));
  }
  return names;
}

function fields(reference: Node): Node[] {
  return Array.isArray(reference.fields) ? (reference.fields as Node[]) : [];
}

function fieldCount(reference: Node): number {
  return fields(reference).filter((field) => !field.A_Star).length;
}

function isStar(reference: Node): boolean {
  return fields(reference).some((field) => field.A_Star !== undefined);
}

function lastField(reference: Node): string | undefined {
  const last = fields(reference).at(-1)?.String as Node | undefined;
  return typeof last?.sval === "string" ? last.sval : undefined;
}
