// Counts the leaf test points of nested TAP on stdin (a subtest's own summary line is not counted
// again) and prints "passed failed" for .ci/run. As in tap itself, a failing point marked TODO (a
// known, documented gap) is not a failure; it is not counted as passed either. SKIP counts as passed.
import { createInterface } from 'node:readline'

let passed = 0
let failed = 0
let prevIndent = -1
for await (const line of createInterface({ input: process.stdin })) {
  if (line.trim() === '') continue
  const m = /^(\s*)(not ok|ok)\b/.exec(line)
  const indent = line.length - line.trimStart().length
  if (m !== null) {
    const isParent = prevIndent > indent
    if (!isParent) {
      if (m[2] === 'ok') passed++
      else if (!/# TODO/i.test(line)) failed++
    } else if (m[2] === 'not ok' && !/# (SKIP|TODO)/i.test(line)) {
      // A subtest that failed without a failing child (timeout, crash, plan mismatch) is a failure too.
      failed++
    }
  }
  prevIndent = indent
}
process.stdout.write(`${passed} ${failed}\n`)
