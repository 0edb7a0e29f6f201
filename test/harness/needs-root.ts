/**
 * Suites that need root (network namespaces, LXD, Incus): without root they skip with a message
 * saying why; under CI=true a missing root is a failure, not a skip.
 */
export function rootSuite(what: string): jest.Describe {
  const isRoot = process.getuid?.() === 0;
  if (!isRoot) {
    if (process.env.CI === 'true') {
      test(`${what} needs root`, () => {
        throw new Error(`CI=true: ${what} needs root (network namespaces, LXD, Incus); run CI as root`);
      });
    } else {
      test.skip(`${what} needs root (network namespaces, LXD, Incus): skipped`, () => undefined);
    }
  }
  return isRoot ? describe : describe.skip;
}
