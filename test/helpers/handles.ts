/** Counts of live libuv handles of the kinds a socket leak shows up as. */
export function networkHandles(): number {
  return process.getActiveResourcesInfo().filter((r) => r === 'TCPSocketWrap' || r === 'TCPServerWrap' || r === 'TLSWrap').length;
}

/** Waits (a bounded number of event-loop turns, no timers) for the handle count to return to `baseline`. */
export async function settleHandles(baseline: number, turns = 500): Promise<number> {
  let count = networkHandles();
  for (let i = 0; i < turns && count > baseline; i++) {
    await new Promise((resolve) => setImmediate(resolve));
    count = networkHandles();
  }
  return count;
}
