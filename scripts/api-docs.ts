// Generates the API reference, docs/api/<package>/<Module>.md and docs/api/README.md, from the JSDoc of every
// export of every published package (see scripts/jsdoc.ts for how the sources are read).
// Run: pnpm exec node scripts/api-docs.ts (writes the files) or --check, which fails when an export lacks
// JSDoc, a summary, an example, @category or @since (values also need When to use, Details and Gotchas), or
// when the committed files differ from what would be generated.
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { type Declaration, type Doc, type Member, type Module, type Package, packages, tagValue } from "./jsdoc.ts"

const root = process.cwd()
const check = process.argv.includes("--check")
const out = "docs/api"

/** Categories in reading order; any other category comes after them, alphabetically. */
const categoryOrder = [
  "constructors",
  "layers",
  "services",
  "models",
  "consumers",
  "combinators",
  "guards",
  "predicates",
  "getters",
  "constants",
  "errors",
  "reasons"
]

const isValue = (declaration: Declaration) =>
  declaration.kind === "const" || declaration.kind === "function" || declaration.kind === "class"

// ---------------------------------------------------------------------------------------------------------
// completeness
// ---------------------------------------------------------------------------------------------------------

const problems: Array<string> = []

const where = (declaration: Declaration) => `${declaration.file}:${declaration.doc?.line ?? declaration.line}`

const requireDoc = (module: Module, declaration: Declaration): void => {
  const doc = declaration.doc
  const name = `${module.name}.${declaration.name}`
  if (doc === undefined) {
    problems.push(`${where(declaration)}: ${name} has no JSDoc`)
    return
  }
  if (declaration.kind === "namespace") {
    // A barrel's `export * as X`: documented by its module.
    if (tagValue(doc, "since") === undefined) problems.push(`${where(declaration)}: ${name} lacks @since`)
    return
  }
  const missing: Array<string> = []
  if (doc.summary === "") missing.push("a summary")
  if (doc.examples.length === 0) missing.push("an example (a ```ts block)")
  if (tagValue(doc, "category") === undefined) missing.push("@category")
  if (tagValue(doc, "since") === undefined) missing.push("@since")
  if (isValue(declaration)) {
    for (const section of ["When to use", "Details", "Gotchas"]) {
      if (!doc.sections.some((s) => s.title === section)) missing.push(`**${section}**`)
    }
  }
  if (missing.length > 0) problems.push(`${where(declaration)}: ${name} lacks ${missing.join(", ")}`)
}

// ---------------------------------------------------------------------------------------------------------
// rendering
// ---------------------------------------------------------------------------------------------------------

const fence = (code: string) => ["```ts", code, "```"].join("\n")

/** The description and sections of a doc, as markdown (tags are rendered by the caller). */
const body = (doc: Doc, headingLevel: number): Array<string> => {
  const parts: Array<string> = []
  if (doc.description !== "") parts.push(doc.description)
  for (const section of doc.sections) {
    parts.push(`${"#".repeat(headingLevel)} ${section.title}`)
    if (section.text !== "") parts.push(section.text)
  }
  return parts
}

const footer = (doc: Doc | undefined): Array<string> => {
  if (doc === undefined) return []
  const parts: Array<string> = []
  const sees = doc.tags.filter((t) => t.tag === "see").map((t) => `- ${t.value}`)
  if (sees.length > 0) parts.push(["See also:", "", ...sees].join("\n"))
  const facts: Array<string> = []
  const category = tagValue(doc, "category")
  if (category !== undefined) facts.push(`Category: ${category}`)
  const since = tagValue(doc, "since")
  if (since !== undefined) facts.push(`Since: ${since}`)
  if (facts.length > 0) parts.push(facts.join(" · "))
  return parts
}

/** Short member docs (a description only) become a list; members with sections or examples get a heading. */
const renderMembers = (owner: string, list: ReadonlyArray<Member>): Array<string> => {
  const documented = list.filter((m) => m.doc !== undefined)
  if (documented.length === 0) return []
  const short = documented.filter((m) => m.doc!.sections.length === 0 && m.doc!.examples.length === 0)
  const long = documented.filter((m) => !short.includes(m))
  const parts: Array<string> = []
  if (short.length > 0) {
    parts.push(short.map((m) => `- \`${m.name}\`: ${m.doc!.description.replace(/\n/g, " ")}`).join("\n"))
  }
  for (const member of long) {
    parts.push(`#### ${owner}.${member.name}`)
    parts.push(fence(member.signature))
    parts.push(...body(member.doc!, 5))
    parts.push(...footer(member.doc))
  }
  return parts
}

const heading = (module: Module, declaration: Declaration): string => {
  const twins = module.declarations.filter((d) => d.name === declaration.name && !d.internal)
  if (twins.length < 2) return declaration.name
  return `${declaration.name} (${isValue(declaration) ? "value" : "type"})`
}

const anchor = (text: string) => text.toLowerCase().replace(/[^\w\- ]/g, "").replace(/ /g, "-")

const categoryOf = (declaration: Declaration) => tagValue(declaration.doc, "category") ?? "other"

const rank = (category: string) => {
  const i = categoryOrder.indexOf(category)
  return i === -1 ? categoryOrder.length : i
}

const byCategory = (declarations: ReadonlyArray<Declaration>): Array<[string, Array<Declaration>]> => {
  const groups = new Map<string, Array<Declaration>>()
  for (const declaration of declarations) {
    const category = categoryOf(declaration)
    const group = groups.get(category) ?? []
    group.push(declaration)
    groups.set(category, group)
  }
  return [...groups.entries()].sort(([a], [b]) => rank(a) - rank(b) || a.localeCompare(b))
}

const publicDeclarations = (module: Module) => module.declarations.filter((d) => !d.internal)

const renderModule = (pkg: Package, module: Module): string => {
  const parts: Array<string> = []
  parts.push(`# ${module.name}`)
  parts.push(
    `\`import { ${module.name} } from "${pkg.name}"\` · source: [${module.file}](../../../${module.file})`
  )
  parts.push("Generated by `node scripts/api-docs.ts` from the JSDoc in the source: do not edit this file.")
  if (module.doc !== undefined) parts.push(...body(module.doc, 2))
  const groups = byCategory(publicDeclarations(module))
  parts.push("## Contents")
  parts.push(
    groups.map(([category, list]) =>
      `- ${category}: ${list.map((d) => `[${heading(module, d)}](#${anchor(heading(module, d))})`).join(", ")}`
    ).join("\n")
  )
  for (const [category, list] of groups) {
    parts.push(`## ${category}`)
    for (const declaration of list) {
      parts.push(`### ${heading(module, declaration)}`)
      if (declaration.doc !== undefined) {
        const doc = declaration.doc
        if (doc.description !== "") parts.push(doc.description)
        parts.push(fence(declaration.signature))
        for (const section of doc.sections) {
          parts.push(`**${section.title}**`)
          if (section.text !== "") parts.push(section.text)
        }
      } else {
        parts.push(fence(declaration.signature))
      }
      if (declaration.reexportedFrom !== undefined && declaration.file !== module.file) {
        parts.push(`Declared in [${declaration.file}](../../../${declaration.file}) and re-exported here.`)
      }
      parts.push(...renderMembers(declaration.name, declaration.members))
      parts.push(...footer(declaration.doc))
    }
  }
  return parts.join("\n\n") + "\n"
}

const renderIndex = (all: ReadonlyArray<Package>): string => {
  const parts: Array<string> = ["# API reference"]
  parts.push(
    "Generated by `node scripts/api-docs.ts` from the JSDoc of every export: do not edit these files. " +
      "`node scripts/api-docs.ts --check` (part of `pnpm docs:check`) fails when an export lacks its JSDoc or " +
      "its example, or when these files are stale; `node scripts/jsdoc-examples.ts` compiles and runs every " +
      "example. For guides and concepts, start at [the documentation map](../README.md)."
  )
  for (const pkg of all) {
    parts.push(`## ${pkg.name}`)
    if (pkg.description !== "") parts.push(`${pkg.description}.`)
    const rows = pkg.modules
      .filter((m) => m.name !== "index")
      .map((m) => {
        const count = publicDeclarations(m).length
        return `| [${m.name}](${pkg.short}/${m.name}.md) | ${(m.doc?.summary ?? "").replace(/\|/g, "\\|")} | ${count} |`
      })
    parts.push(["| module | what it is for | exports |", "| --- | --- | --- |", ...rows].join("\n"))
  }
  return parts.join("\n\n") + "\n"
}

// ---------------------------------------------------------------------------------------------------------
// main
// ---------------------------------------------------------------------------------------------------------

const all = packages(root)
const files = new Map<string, string>()
let documented = 0
for (const pkg of all) {
  for (const module of pkg.modules) {
    for (const declaration of publicDeclarations(module)) {
      requireDoc(module, declaration)
      if (declaration.doc !== undefined && declaration.kind !== "namespace") documented++
    }
    if (module.name === "index") continue
    if (module.doc === undefined) problems.push(`${module.file}:1: the module has no opening JSDoc`)
    files.set(join(out, pkg.short, `${module.name}.md`), renderModule(pkg, module))
  }
}
files.set(join(out, "README.md"), renderIndex(all))

const existing = (dir: string): Array<string> =>
  !existsSync(dir) ? [] : readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name)
    return entry.isDirectory() ? existing(path) : [path]
  })

let stale = 0
for (const path of existing(out)) {
  if (files.has(path)) continue
  stale++
  if (check) problems.push(`${path}: not generated any more (run pnpm exec node scripts/api-docs.ts)`)
  else rmSync(path)
}
for (const [path, content] of files) {
  const current = existsSync(path) ? readFileSync(path, "utf8") : undefined
  if (current === content) continue
  stale++
  if (check) problems.push(`${path}: stale (run pnpm exec node scripts/api-docs.ts)`)
  else {
    mkdirSync(join(path, ".."), { recursive: true })
    writeFileSync(path, content)
  }
}

const modules = all.reduce((n, pkg) => n + pkg.modules.filter((m) => m.name !== "index").length, 0)
for (const problem of problems) console.error(problem)
if (!check && stale > 0) console.log(`wrote ${stale} file(s) under ${out}`)
console.log(
  `${documented} exports documented in ${modules} modules${
    problems.length > 0 ? `, ${problems.length} problem(s)` : ""
  }`
)
process.exit(check && problems.length > 0 ? 1 : 0)
