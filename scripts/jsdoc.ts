// Reads the public surface of the workspace's packages from their source text: each public module
// (packages/<name>/src/*.ts, not internal/), its exports and the JSDoc block right before each one. Used by
// scripts/api-docs.ts (the API reference and its completeness check) and scripts/jsdoc-examples.ts (every
// JSDoc example compiled and run). TypeScript 7 ships no compiler API for scripts, so this is a small
// scanner: it masks strings, comments and regular expressions, tracks bracket depth, and relies on the
// code being formatted by dprint (top-level statements start at column 0).
import { existsSync, readdirSync, readFileSync } from "node:fs"
import { dirname, join, relative } from "node:path"

/**
 * Packages left out of the API reference and its checks for now, each with the reason (printed on every run).
 * A package being written may be listed here until its exports carry JSDoc with asserting examples.
 */
export const pending: Readonly<Record<string, string>> = {}

export interface Package {
  readonly dir: string
  /** The directory name, used for docs/api/<short>/. */
  readonly short: string
  readonly name: string
  readonly description: string
  readonly modules: ReadonlyArray<Module>
  readonly manifest: { readonly dependencies?: Readonly<Record<string, string>> | undefined }
}

export interface Module {
  readonly name: string
  /** The file, relative to the repository root. */
  readonly file: string
  readonly doc: Doc | undefined
  readonly declarations: ReadonlyArray<Declaration>
  /** Every JSDoc block of the file, in order (examples can live in any of them). */
  readonly comments: ReadonlyArray<Doc>
}

export type Kind = "const" | "function" | "class" | "interface" | "type" | "namespace"

export interface Declaration {
  readonly name: string
  readonly kind: Kind
  /** The declaration's head: what a reader needs to call it or build it, without the implementation. */
  readonly signature: string
  readonly doc: Doc | undefined
  /** Where the declaration is (a re-export points into the file that declares it). */
  readonly file: string
  readonly line: number
  readonly internal: boolean
  /** Documented members of an interface (the methods of a service). */
  readonly members: ReadonlyArray<Member>
  /** The module the name is re-exported from, for `export type { X }` of an imported name. */
  readonly reexportedFrom: string | undefined
}

export interface Member {
  readonly name: string
  readonly signature: string
  readonly doc: Doc | undefined
  readonly line: number
}

export interface Example {
  readonly code: string
  /** 1-based line of the example's first code line in the source file. */
  readonly line: number
}

export interface Doc {
  readonly file: string
  /** 1-based line of the opening `/**`. */
  readonly line: number
  /** Offset of the opening `/**` in the file. */
  readonly start: number
  /** Offset just after the closing `*\/`. */
  readonly end: number
  /** Everything before the first section heading or tag. */
  readonly description: string
  /** The first paragraph of the description. */
  readonly summary: string
  /** `**When to use**` and the like, in order, each with its text. */
  readonly sections: ReadonlyArray<{ readonly title: string; readonly text: string }>
  readonly tags: ReadonlyArray<{ readonly tag: string; readonly value: string }>
  readonly examples: ReadonlyArray<Example>
}

// ---------------------------------------------------------------------------------------------------------
// scanning
// ---------------------------------------------------------------------------------------------------------

const CODE = 0
const COMMENT = 1
const LITERAL = 2

/** Classifies every character of `text`: code, comment, or the inside of a string, template or regex. */
export const mask = (text: string): Uint8Array => {
  const out = new Uint8Array(text.length)
  // Each entry is a template literal whose `${` opened at the recorded brace depth.
  const templates: Array<number> = []
  let braces = 0
  let lastSignificant = ""
  let i = 0
  const regexMayFollow = () =>
    lastSignificant === "" || "(,=:[!&|?{};+-*%<>~^".includes(lastSignificant) || /\b(return|typeof|case|of|in)$/
      .test(text.slice(Math.max(0, i - 8), i).trimEnd())
  const template = () => {
    // Inside a template literal, from just after the opening backtick or a closing `}` of `${...}`.
    while (i < text.length) {
      const c = text[i]!
      if (c === "\\") {
        out[i] = LITERAL
        out[i + 1] = LITERAL
        i += 2
        continue
      }
      if (c === "`") {
        out[i] = LITERAL
        i++
        lastSignificant = "`"
        return
      }
      if (c === "$" && text[i + 1] === "{") {
        out[i] = LITERAL
        out[i + 1] = LITERAL
        i += 2
        templates.push(braces)
        braces++
        lastSignificant = "{"
        return
      }
      out[i] = LITERAL
      i++
    }
  }
  while (i < text.length) {
    const c = text[i]!
    const next = text[i + 1]
    if (c === "/" && next === "/") {
      while (i < text.length && text[i] !== "\n") out[i++] = COMMENT
      continue
    }
    if (c === "/" && next === "*") {
      const close = text.indexOf("*/", i + 2)
      const end = close === -1 ? text.length : close + 2
      out.fill(COMMENT, i, end)
      i = end
      continue
    }
    if (c === "\"" || c === "'") {
      out[i++] = LITERAL
      while (i < text.length && text[i] !== c && text[i] !== "\n") {
        if (text[i] === "\\") out[i++] = LITERAL
        out[i++] = LITERAL
      }
      out[i++] = LITERAL
      lastSignificant = c
      continue
    }
    if (c === "`") {
      out[i++] = LITERAL
      template()
      continue
    }
    if (c === "/" && regexMayFollow()) {
      out[i++] = LITERAL
      let inClass = false
      while (i < text.length && text[i] !== "\n") {
        const r = text[i]!
        out[i++] = LITERAL
        if (r === "\\") {
          out[i++] = LITERAL
          continue
        }
        if (r === "[") inClass = true
        else if (r === "]") inClass = false
        else if (r === "/" && !inClass) break
      }
      while (i < text.length && /[a-z]/.test(text[i]!)) out[i++] = LITERAL
      lastSignificant = "/"
      continue
    }
    if (c === "{") braces++
    if (c === "}") {
      if (templates.length > 0 && templates[templates.length - 1] === braces - 1) {
        templates.pop()
        braces--
        out[i++] = LITERAL
        template()
        continue
      }
      braces--
    }
    out[i] = CODE
    if (!/\s/.test(c)) lastSignificant = c
    i++
  }
  return out
}

/** Bracket depth before each character, counting `(`, `[` and `{` in code only. */
const depths = (text: string, kinds: Uint8Array): Int32Array => {
  const out = new Int32Array(text.length + 1)
  let depth = 0
  for (let i = 0; i < text.length; i++) {
    out[i] = depth
    if (kinds[i] !== CODE) continue
    const c = text[i]!
    if (c === "(" || c === "[" || c === "{") depth++
    else if (c === ")" || c === "]" || c === "}") depth--
  }
  out[text.length] = depth
  return out
}

const lineOf = (text: string, offset: number): number => {
  let line = 1
  for (let i = 0; i < offset; i++) if (text.charCodeAt(i) === 10) line++
  return line
}

/** The offset of the bracket that closes the one at `open`. */
const matching = (text: string, kinds: Uint8Array, open: number): number => {
  let depth = 0
  for (let i = open; i < text.length; i++) {
    if (kinds[i] !== CODE) continue
    const c = text[i]!
    if (c === "(" || c === "[" || c === "{") depth++
    else if (c === ")" || c === "]" || c === "}") {
      depth--
      if (depth === 0) return i
    }
  }
  return text.length
}

// ---------------------------------------------------------------------------------------------------------
// JSDoc
// ---------------------------------------------------------------------------------------------------------

const sectionHeading = /^\*\*([A-Z][A-Za-z ]+)\*\*$/

/** The lines joined, without leading and trailing blank lines. */
const trimLines = (xs: ReadonlyArray<string>): string => {
  const ys = [...xs]
  while (ys.length > 0 && ys[0] === "") ys.shift()
  while (ys.length > 0 && ys[ys.length - 1] === "") ys.pop()
  return ys.join("\n")
}

/** Parses the JSDoc block at `start` (the offset of its `/**`). */
export const parseDoc = (file: string, text: string, start: number, end: number): Doc => {
  const raw = text.slice(start + 3, end - 2)
  // Cleaned lines: the `*` prefixes removed. Raw line k is on source line (line of the opening) + k.
  const cleaned = raw.split("\n").map((line, k) =>
    (k === 0 ? line : line.replace(/^\s*\* ?/, "")).replace(/^\s*$/, "").trimEnd()
  )
  cleaned[0] = cleaned[0]!.trim()
  const leading = Math.max(0, cleaned.findIndex((line) => line !== ""))
  let last = cleaned.length - 1
  while (last >= leading && cleaned[last] === "") last--
  const lines = cleaned.slice(leading, last + 1)
  const firstLine = lineOf(text, start)
  const description: Array<string> = []
  const sections: Array<{ title: string; lines: Array<string> }> = []
  const tags: Array<{ tag: string; value: string }> = []
  const examples: Array<Example> = []
  let inFence = false
  let fence: { lines: Array<string>; line: number; ts: boolean } | undefined
  for (const [i, line] of lines.entries()) {
    const sourceLine = firstLine + leading + i
    if (line.startsWith("```")) {
      if (!inFence) {
        inFence = true
        fence = { lines: [], line: sourceLine + 1, ts: /^```(ts|typescript)\s*$/.test(line) }
      } else {
        inFence = false
        if (fence?.ts === true) examples.push({ code: fence.lines.join("\n"), line: fence.line })
        fence = undefined
      }
    } else if (inFence) {
      fence?.lines.push(line)
    }
    const tag = inFence ? null : /^@(\w+)\s*(.*)$/.exec(line)
    if (tag !== null) {
      tags.push({ tag: tag[1]!, value: tag[2]!.trim() })
      continue
    }
    if (tags.length > 0 && !inFence && !line.startsWith("```")) {
      // A tag's continuation line.
      const last = tags[tags.length - 1]!
      if (line !== "") tags[tags.length - 1] = { tag: last.tag, value: `${last.value} ${line.trim()}`.trim() }
      continue
    }
    const heading = inFence ? null : sectionHeading.exec(line)
    if (heading !== null) {
      sections.push({ title: heading[1]!, lines: [] })
      continue
    }
    if (sections.length > 0) sections[sections.length - 1]!.lines.push(line)
    else description.push(line)
  }
  const descriptionText = trimLines(description)
  const summary = descriptionText.split(/\n\n/)[0] ?? ""
  return {
    file,
    line: firstLine,
    start,
    end,
    description: descriptionText,
    summary: summary.replace(/\n/g, " "),
    sections: sections.map((s) => ({ title: s.title, text: trimLines(s.lines) })),
    tags,
    examples
  }
}

export const tagValue = (doc: Doc | undefined, tag: string): string | undefined =>
  doc?.tags.find((t) => t.tag === tag)?.value

export const hasTag = (doc: Doc | undefined, tag: string): boolean => doc?.tags.some((t) => t.tag === tag) ?? false

/** Every JSDoc block of a file. */
const comments = (file: string, text: string, kinds: Uint8Array): Array<Doc> => {
  const out: Array<Doc> = []
  for (let i = 0; i < text.length; i++) {
    if (
      kinds[i] === COMMENT && text.startsWith("/**", i) && text[i + 3] !== "/" && (i === 0 || kinds[i - 1] !== COMMENT)
    ) {
      const close = text.indexOf("*/", i + 3)
      const end = close === -1 ? text.length : close + 2
      out.push(parseDoc(file, text, i, end))
      i = end - 1
    }
  }
  return out
}

/** The JSDoc block that ends right before `offset` (only whitespace between), if any. */
const docBefore = (docs: ReadonlyArray<Doc>, text: string, offset: number): Doc | undefined => {
  for (let k = docs.length - 1; k >= 0; k--) {
    const doc = docs[k]!
    if (doc.end > offset) continue
    return text.slice(doc.end, offset).trim() === "" ? doc : undefined
  }
  return undefined
}

// ---------------------------------------------------------------------------------------------------------
// declarations
// ---------------------------------------------------------------------------------------------------------

const identifierChar = /[\w$]/

/** The offset of the `{` opening a class, interface or function body (not a type literal), from `from`. */
const bodyBrace = (text: string, kinds: Uint8Array, from: number, to: number): number => {
  let depth = 0
  for (let i = from; i < to; i++) {
    if (kinds[i] !== CODE) continue
    const c = text[i]!
    if (c === "{" && depth === 0) {
      let j = i - 1
      while (j >= from && /\s/.test(text[j]!)) j--
      const before = text[j] ?? ""
      if (identifierChar.test(before) || before === ")" || before === ">" || before === "]") return i
    }
    if (c === "(" || c === "[" || c === "{") depth++
    else if (c === ")" || c === "]" || c === "}") depth--
  }
  return -1
}

const squash = (s: string): string => s.replace(/\s*\n\s*/g, " ").replace(/\(\s+/g, "(").replace(/\s+\)/g, ")").trim()

/** Renders `<G>(params): R => body` (possibly curried) as the function type `<G>(params) => R`. */
const arrowType = (text: string, kinds: Uint8Array, from: number, to: number): string | undefined => {
  const parts: Array<string> = []
  let i = from
  const skip = () => {
    while (i < to && /\s/.test(text[i]!)) i++
  }
  while (true) {
    skip()
    let generics = ""
    if (text[i] === "<") {
      // Generic parameters: up to the matching `>` (they may hold `{ ... }` and `=>` inside brackets).
      let angle = 0
      const start = i
      for (; i < to; i++) {
        if (kinds[i] !== CODE) continue
        const c = text[i]!
        if (c === "(" || c === "[" || c === "{") i = matching(text, kinds, i)
        else if (c === "<") angle++
        else if (c === ">" && text[i - 1] !== "=") {
          angle--
          if (angle === 0) break
        }
      }
      generics = text.slice(start, i + 1)
      i++
      skip()
    }
    if (text[i] !== "(") return undefined
    const close = matching(text, kinds, i)
    const params = text.slice(i, close + 1)
    i = close + 1
    skip()
    let ret = ""
    if (text[i] === ":") {
      const start = i + 1
      for (; i < to; i++) {
        if (kinds[i] !== CODE) continue
        const c = text[i]!
        if (c === "(" || c === "[" || c === "{") i = matching(text, kinds, i)
        else if (c === "=" && text[i + 1] === ">") break
      }
      ret = text.slice(start, i).trim()
    }
    if (!text.startsWith("=>", i)) return undefined
    i += 2
    parts.push(`${squash(generics)}${squash(params)}`)
    // Another arrow follows (a curried function) when its generics or its parameter list come next.
    skip()
    const another = text[i] === "<" || (text[i] === "(" && (() => {
      const close = matching(text, kinds, i)
      let j = close + 1
      while (j < to && /\s/.test(text[j]!)) j++
      return text[j] === ":" || text.startsWith("=>", j)
    })())
    if (ret !== "" || !another) {
      const tail = ret === "" ? "unknown" : squash(ret)
      return another ? undefined : `${parts.join(" => ")} => ${tail}`
    }
  }
}

/** The members of an interface body (from its `{` to its `}`), with their JSDoc. */
const members = (
  text: string,
  kinds: Uint8Array,
  depth: Int32Array,
  docs: ReadonlyArray<Doc>,
  open: number,
  close: number
): Array<Member> => {
  const out: Array<Member> = []
  const base = depth[open + 1]!
  let i = open + 1
  while (i < close) {
    // The start of the next member: first code character at the body's depth.
    while (i < close && (kinds[i] !== CODE || /\s/.test(text[i]!))) i++
    if (i >= close) break
    const start = i
    // The member ends at a newline at the body's depth whose next line does not continue it.
    let end = start
    for (let j = start; j < close; j++) {
      if (text[j] === "\n" && depth[j] === base && kinds[j] !== LITERAL) {
        const rest = text.slice(j + 1, close).replace(/^\s*/, "")
        if (!/^[|&.?:=<>)\]}]/.test(rest)) {
          end = j
          break
        }
      }
      end = j + 1
    }
    // Continuation lines lose the member's own indentation, so the signature reads as if at column 0.
    const column = start - text.lastIndexOf("\n", start) - 1
    const source = text.slice(start, end).split("\n").map((line, k) =>
      k === 0 ? line : line.replace(new RegExp(`^ {0,${column}}`), "")
    ).join("\n")
    const name = /^(?:readonly\s+)?([\w$]+|\[[^\]]+\])\??\s*[:(<]/.exec(source)?.[1]
    if (name !== undefined) {
      out.push({
        name,
        signature: source.trim(),
        doc: docBefore(docs, text, start),
        line: lineOf(text, start)
      })
    }
    i = end + 1
  }
  return out
}

/** The body of an interface with its comments removed, dedented: its shape at a glance. */
const shape = (text: string, kinds: Uint8Array, start: number, end: number): string => {
  let out = ""
  for (let i = start; i < end; i++) if (kinds[i] !== COMMENT) out += text[i]
  return out.split("\n").map((line) => line.trimEnd()).filter((line) => line.trim() !== "").join("\n")
}

interface Statement {
  readonly start: number
  readonly end: number
}

/** Top-level statements that start with `export`. */
const exportStatements = (text: string, kinds: Uint8Array, depth: Int32Array): Array<Statement> => {
  const out: Array<Statement> = []
  let i = 0
  while (i < text.length) {
    const atLineStart = i === 0 || text[i - 1] === "\n"
    if (atLineStart && kinds[i] === CODE && depth[i] === 0 && text.startsWith("export ", i)) {
      let end = text.length
      for (let j = i; j < text.length; j++) {
        if (text[j] !== "\n" || depth[j] !== 0 || kinds[j] === LITERAL) continue
        const rest = text.slice(j + 1)
        const next = /^(?:[ \t]*\n)*([^\n]*)/.exec(rest)?.[1] ?? ""
        if (next === "" && rest.trim() === "") {
          end = j
          break
        }
        if (/^\S/.test(next) && !/^[|&.?:=<>)\]}]/.test(next)) {
          end = j
          break
        }
      }
      out.push({ start: i, end })
      i = end
      continue
    }
    i++
  }
  return out
}

interface Parsed {
  readonly text: string
  readonly kinds: Uint8Array
  readonly depth: Int32Array
  readonly docs: ReadonlyArray<Doc>
}

const parsedFiles = new Map<string, Parsed>()

/** Reads and scans a file; `file` is relative to `root`, and so are the file names in its docs. */
const parseFile = (root: string, file: string): Parsed => {
  let parsed = parsedFiles.get(file)
  if (parsed === undefined) {
    const text = readFileSync(join(root, file), "utf8")
    const kinds = mask(text)
    parsed = { text, kinds, depth: depths(text, kinds), docs: comments(file, text, kinds) }
    parsedFiles.set(file, parsed)
  }
  return parsed
}

/** Where an imported name comes from, for `export type { X }` of an import. */
const importSource = (text: string, name: string): string | undefined => {
  const pattern = /import\s+(?:type\s+)?\{([^}]*)\}\s+from\s+"([^"]+)"/g
  for (const match of text.matchAll(pattern)) {
    const names = match[1]!.split(",").map((n) => n.trim().replace(/^type\s+/, "").split(/\s+as\s+/).pop()!.trim())
    if (names.includes(name)) return match[2]
  }
  return undefined
}

/** Parses one declaration statement (`export const|function|class|interface|type ...`). */
const declaration = (file: string, parsed: Parsed, statement: Statement): Declaration | undefined => {
  const { depth, docs, kinds, text } = parsed
  const source = text.slice(statement.start, statement.end)
  const head =
    /^export\s+(?:declare\s+)?(?:(?:abstract\s+)?(class)|(interface)|(type)|(const|let)|(?:async\s+)?(function\*?)|(namespace))\s+([\w$]+)/
      .exec(source)
  if (head === null) return undefined
  const kind: Kind = head[1] !== undefined
    ? "class"
    : head[2] !== undefined
    ? "interface"
    : head[3] !== undefined
    ? "type"
    : head[4] !== undefined
    ? "const"
    : head[5] !== undefined
    ? "function"
    : "namespace"
  const name = head[7]!
  const doc = docBefore(docs, text, statement.start)
  const line = lineOf(text, statement.start)
  let signature = squash(source)
  let memberList: Array<Member> = []
  if (kind === "class" || kind === "function" || kind === "interface" || kind === "namespace") {
    const brace = bodyBrace(text, kinds, statement.start, statement.end)
    if (brace >= 0) {
      const headText = text.slice(statement.start, brace).trimEnd()
      if (kind === "interface") {
        const close = matching(text, kinds, brace)
        memberList = members(text, kinds, depth, docs, brace, close)
        signature = `${squash(headText)} {\n${shape(text, kinds, brace + 1, close)}\n}`
      } else {
        signature = headText.includes("\n") && kind === "class" ? headText : squash(headText)
      }
    }
  } else if (kind === "type") {
    signature = source.trim()
  } else {
    // const: `const name: Type = ...`, or `const name = <arrow function>`, or `const name = value`.
    const afterName = statement.start + head[0].length
    let i = afterName
    while (/\s/.test(text[i]!)) i++
    if (text[i] === ":") {
      let j = i + 1
      for (; j < statement.end; j++) {
        if (kinds[j] !== CODE) continue
        const c = text[j]!
        if (c === "(" || c === "[" || c === "{") j = matching(text, kinds, j)
        else if (c === "=" && text[j + 1] !== ">" && text[j + 1] !== "=" && !"<>!=".includes(text[j - 1]!)) break
      }
      const annotation = text.slice(i + 1, j).trim()
      signature = `export const ${name}: ${annotation.includes("\n") ? annotation : squash(annotation)}`
    } else if (text[i] === "=") {
      const fn = arrowType(text, kinds, i + 1, statement.end)
      if (fn !== undefined) signature = `export const ${name}: ${fn}`
      else {
        const first = source.split("\n")[0]!
        signature = first.length < source.trim().length ? `${first} …` : first
      }
    }
  }
  return {
    name,
    kind,
    signature,
    doc,
    file,
    line,
    internal: hasTag(doc, "internal"),
    members: memberList,
    reexportedFrom: undefined
  }
}

/** Parses a public module: its doc, its exports (following `export type { X }` re-exports of imports). */
export const parseModule = (root: string, file: string): Module => {
  const parsed = parseFile(root, file)
  const { text } = parsed
  const declarations: Array<Declaration> = []
  for (const statement of exportStatements(text, parsed.kinds, parsed.depth)) {
    const source = text.slice(statement.start, statement.end)
    const reexport = /^export\s+(type\s+)?\{([^}]*)\}(?:\s+from\s+"([^"]+)")?/.exec(source)
    if (reexport !== null) {
      const doc = docBefore(parsed.docs, text, statement.start)
      for (const entry of reexport[2]!.split(",").map((n) => n.trim()).filter((n) => n !== "")) {
        const name = entry.split(/\s+as\s+/).pop()!.trim()
        const local = entry.split(/\s+as\s+/)[0]!.replace(/^type\s+/, "").trim()
        const from = reexport[3] ?? importSource(text, local)
        const target = from === undefined ? undefined : join(dirname(file), from)
        const found = target === undefined || !existsSync(join(root, target))
          ? undefined
          : parseDeclarations(root, target).find((d) => d.name === local)
        declarations.push({
          name,
          kind: found?.kind ?? "type",
          signature: found?.signature ?? `export type { ${entry} }`,
          doc: found?.doc ?? doc,
          file: found?.file ?? file,
          line: found?.line ?? lineOf(text, statement.start),
          internal: hasTag(found?.doc ?? doc, "internal"),
          members: found?.members ?? [],
          reexportedFrom: target
        })
      }
      continue
    }
    const namespace = /^export\s+\*\s+as\s+([\w$]+)\s+from\s+"([^"]+)"/.exec(source)
    if (namespace !== null) {
      const target = join(dirname(file), namespace[2]!)
      declarations.push({
        name: namespace[1]!,
        kind: "namespace",
        signature: squash(source),
        doc: docBefore(parsed.docs, text, statement.start),
        file,
        line: lineOf(text, statement.start),
        internal: false,
        members: [],
        reexportedFrom: target
      })
      continue
    }
    const found = declaration(file, parsed, statement)
    if (found !== undefined) declarations.push(found)
  }
  const first = parsed.docs[0]
  const moduleDoc = first !== undefined && text.slice(0, first.start).trim() === "" ? first : undefined
  const name = file.split("/").pop()!.replace(/\.ts$/, "")
  return { name, file, doc: moduleDoc, declarations, comments: parsed.docs }
}

/** The declarations of any file (used to follow re-exports into internal modules). */
const parseDeclarations = (root: string, file: string): Array<Declaration> => {
  const parsed = parseFile(root, file)
  return exportStatements(parsed.text, parsed.kinds, parsed.depth).flatMap((statement) => {
    const found = declaration(file, parsed, statement)
    return found === undefined ? [] : [found]
  })
}

/** The workspace's published packages (not `private`, with `exports`), and their public modules. */
export const packages = (root: string): Array<Package> => {
  const out: Array<Package> = []
  for (const short of readdirSync(join(root, "packages")).sort()) {
    const dir = `packages/${short}`
    const manifest = join(root, dir, "package.json")
    if (!existsSync(manifest)) continue
    const json = JSON.parse(readFileSync(manifest, "utf8")) as {
      name: string
      description?: string
      private?: boolean
      exports?: unknown
      bin?: string | Record<string, string>
      dependencies?: Record<string, string>
    }
    if (json.private === true || json.exports === undefined) continue
    if (pending[dir] !== undefined) {
      console.log(`note: ${dir} is not documented nor checked yet: ${pending[dir]}`)
      continue
    }
    const src = join(root, dir, "src")
    // Executables (the `bin` entries) are programs, not modules of the API.
    const bins = new Set(
      Object.values(typeof json.bin === "string" ? { bin: json.bin } : json.bin ?? {}).map((path) =>
        path.replace(/^\.\/src\//, "")
      )
    )
    const modules = readdirSync(src)
      .filter((f) => f.endsWith(".ts") && !f.endsWith(".test.ts") && !bins.has(f))
      .sort((a, b) => (a === "index.ts" ? -1 : b === "index.ts" ? 1 : a.localeCompare(b)))
      .map((f) => parseModule(root, relative(root, join(src, f))))
    out.push({ dir, short, name: json.name, description: json.description ?? "", modules, manifest: json })
  }
  // Libraries before the packages built on them: the more packages depend on one, the earlier it comes.
  const dependents = (pkg: Package) =>
    out.filter((other) => other.manifest.dependencies?.[pkg.name] !== undefined).length
  return out.sort((a, b) => dependents(b) - dependents(a) || a.short.localeCompare(b.short))
}
