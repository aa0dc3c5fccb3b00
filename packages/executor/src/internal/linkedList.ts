/**
 * An intrusive doubly linked FIFO: the node carries its own links, so pushing allocates nothing and any node
 * can be removed in O(1) (a cancelled queued task leaves the queue at once and frees its slot).
 */

/** A node that can sit in at most one `LinkedList` at a time. */
export interface Node {
  prev: Node | undefined
  next: Node | undefined
  /** The list the node is in, or undefined. Invariant: a node is in `list` iff `list` is set. */
  list: LinkedList<any> | undefined
}

export class LinkedList<T extends Node> {
  head: T | undefined = undefined
  tail: T | undefined = undefined
  /** Invariant: the number of nodes reachable from `head`. */
  size = 0

  push(node: T): void {
    node.list = this
    node.next = undefined
    node.prev = this.tail
    if (this.tail === undefined) this.head = node
    else this.tail.next = node
    this.tail = node
    this.size++
  }

  /** Puts `node` first (a retry goes ahead of the tasks that arrived after it). */
  unshift(node: T): void {
    node.list = this
    node.prev = undefined
    node.next = this.head
    if (this.head === undefined) this.tail = node
    else this.head.prev = node
    this.head = node
    this.size++
  }

  shift(): T | undefined {
    const node = this.head
    if (node !== undefined) this.remove(node)
    return node
  }

  /** Removes `node` if it is in this list; returns whether it was. */
  remove(node: T): boolean {
    if (node.list !== this) return false
    if (node.prev === undefined) this.head = node.next as T | undefined
    else node.prev.next = node.next
    if (node.next === undefined) this.tail = node.prev as T | undefined
    else node.next.prev = node.prev
    node.prev = node.next = node.list = undefined
    this.size--
    return true
  }

  /** The nodes in order, as an array (the list is unchanged). */
  toArray(): Array<T> {
    const out: Array<T> = []
    for (let node = this.head; node !== undefined; node = node.next as T | undefined) out.push(node)
    return out
  }

  /** Empties the list and returns its nodes in order. */
  takeAll(): Array<T> {
    const out: Array<T> = []
    let node = this.head
    while (node !== undefined) {
      const next = node.next as T | undefined
      node.prev = node.next = node.list = undefined
      out.push(node)
      node = next
    }
    this.head = this.tail = undefined
    this.size = 0
    return out
  }
}
