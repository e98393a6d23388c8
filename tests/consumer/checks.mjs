// What the Node consumer checks share: steps counted and reported alike, and the SMS log of
// the `log` provider read for codes.
import { readFileSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";

export const tally = { passed: 0, failed: 0 };

// Runs one named step; with `rethrow`, a failure also stops the steps that depend on it.
export async function step(name, fn, { rethrow = false } = {}) {
  try {
    await fn();
    tally.passed += 1;
    console.log(`ok   ${name}`);
  } catch (err) {
    tally.failed += 1;
    console.log(`FAIL ${name}: ${err?.message ?? err}`);
    if (rethrow) throw err;
  }
}

export function assert(condition, message) {
  if (!condition) throw new Error(message);
}

export function eq(got, want, what) {
  assert(
    JSON.stringify(got) === JSON.stringify(want),
    `${what}: ${JSON.stringify(got)}, expected ${JSON.stringify(want)}`,
  );
}

// The codes sent to `to`, oldest first (the code is the last word of each text).
export function smsCodes(log, to) {
  let text;
  try {
    text = readFileSync(log, "utf8");
  } catch {
    return [];
  }
  return text
    .split("\n")
    .filter((line) => line.trim())
    .map((line) => JSON.parse(line))
    .filter((sms) => sms.to === to)
    .map((sms) => sms.text.split(/\s+/).at(-1));
}

// Waits for a code beyond the `seen` first ones.
export async function newCode(log, to, seen) {
  for (let i = 0; i < 200; i += 1) {
    const codes = smsCodes(log, to);
    if (codes.length > seen) return codes.at(-1);
    await sleep(50);
  }
  throw new Error(`no new SMS to ${to} within 10 s`);
}

// Prints the tally under `name` and exits 0 only when nothing failed.
export function finish(name) {
  console.log(`${name}: ${tally.passed} passed, ${tally.failed} failed`);
  process.exit(tally.failed === 0 ? 0 : 1);
}
