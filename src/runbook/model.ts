/**
 * The step model: one migration as phases of steps, each a single remote side effect with the exact
 * command it runs. It is the one source of truth: `plan` prints it, the workflow executes it.
 *
 * This module is pure (no Node APIs) because the workflow bundle imports it.
 */

/** Phases in runbook order (DESIGN.md 1–11). */
export const PHASES = [
  { id: 'preflight', title: 'Preflight: access, versions, remote and trust, space, inventory' },
  { id: 'presync', title: 'Warm data pre-sync while the source still runs' },
  { id: 'record', title: 'Record the source containers (config, devices, addresses)' },
  { id: 'stop', title: 'Stop the source containers and remove their devices' },
  { id: 'copy', title: 'Copy the containers to the destination' },
  { id: 'data', title: 'Final data sync, push into each container, verify' },
  { id: 'network', title: 'NAT on the destination host' },
  { id: 'proxy', title: 'Reverse proxy: Caddy upstreams to the new addresses' },
  { id: 'fixes', title: 'Service fixes' },
  { id: 'verify', title: 'Verification matrix (gates the cutover)' },
  { id: 'cutover', title: 'Cutover gate and DNS' },
  { id: 'certificates', title: 'Certificates' },
  { id: 'cleanup', title: 'Cleanup gate and source cleanup' },
] as const;

export type PhaseId = (typeof PHASES)[number]['id'];

/** Phases whose steps run per container, in a child workflow each. */
export const CONTAINER_PHASES: readonly PhaseId[] = ['presync', 'record', 'stop', 'copy', 'data'];

/** Where a step runs: on a host over SSH, or in the worker itself (probes, waits, gates). */
export type StepHost = 'source' | 'destination' | 'worker';

/**
 * What the workflow does with a step:
 * - `run`: run `command` unless `check` (on `checkOn`, default the same host) exits 0.
 * - `capture`: run `command` and keep its output under `captureAs` (it is about to change, or
 *   later steps need it).
 * - `gate`: wait for an operator's approval; `command` is empty.
 * - `probe`: a connection test from `host` (TCP, DNS, TLS); part of the verification matrix.
 * - `caddy-rewrite`, `zone-update`: read a file, rewrite it in the worker, write it back (Caddy:
 *   new upstream addresses, or the dead domains removed when `params.remove` names the value).
 * - `wait-dns`, `wait-delegation`, `wait-cert`: durable polls until the world agrees.
 * - `find-dead-domains`: the proxy's domains that no DNS record points at the destination, kept
 *   (comma-separated) under `dead-domains`; the `domains` gate and their removal follow if any.
 * - `vault-unseal`: the key comes from the worker's secret store over stdin, never the command.
 * - `env-secret`: a `run` step whose value (`params.valueRef`) the worker resolves and hands to the
 *   command and its check over stdin, never in the command, history, heartbeat or failure.
 * - `pin-host-key`: the source's host key as the worker pins it, written to the destination's
 *   known_hosts for the rsync pull (never learned from the network).
 * - `resolve-address`: the worker resolves a host name of the plan once; the address is recorded
 *   and used from then on (connections and commands).
 * - `verify-host-keys`: the worker connects to both hosts (host keys against known_hosts, login)
 *   and runs nothing; first, so a wrong key on either host stops the run before any command.
 */
export type StepKind =
  | 'run'
  | 'capture'
  | 'gate'
  | 'probe'
  | 'caddy-rewrite'
  | 'zone-update'
  | 'wait-dns'
  | 'wait-delegation'
  | 'wait-cert'
  | 'wait-window'
  | 'find-dead-domains'
  | 'vault-unseal'
  | 'env-secret'
  | 'pin-host-key'
  | 'verify-host-keys'
  | 'resolve-address';

/** Activity option profiles: quick control-plane calls, long transfers, polls. */
export type StepProfile = 'quick' | 'transfer' | 'poll';

/** A value kept from a capture step, and how the workflow reads it. */
export type CaptureKind =
  | 'text'
  | 'instance-json'
  | 'state-ipv4'
  | 'list-ipv4'
  | 'names'
  | 'bytes'
  | 'digest'
  | 'cert'
  | 'pubkey'
  | 'address'
  | 'vhost-count';

export interface Step {
  /** Stable and unique: `<phase>/<container or tenant>/<name>`; retries and skips name it. */
  id: string;
  phase: PhaseId;
  title: string;
  host: StepHost;
  /** Destination name of the container the step concerns. */
  container?: string;
  kind: StepKind;
  /** The exact command (placeholders `{{kind:name}}` are filled at run time). */
  command: string;
  /** Run through `sudo -n sh -c` (the plan's host setting); applied after placeholders are filled. */
  sudo?: boolean;
  /** Exit 0 means the step's effect is already there: it is skipped and reported so. */
  check?: string;
  checkOn?: StepHost;
  checkSudo?: boolean;
  captureAs?: { kind: CaptureKind; key: string };
  /**
   * Capture once: the first value stands (the source as it was before the migration changed it;
   * re-recording after the stop would lose the devices a cancel must restore).
   */
  once?: boolean;
  /** A non-zero exit is a refusal of the guide's (checksums differ, no storage block): no blind retry. */
  refuses?: boolean;
  /** Deletes or overwrites something not re-derivable; only after its gate. */
  destructive?: boolean;
  /** The approval this step waits for (kind `gate`), or runs only after. */
  gate?: GateName;
  profile: StepProfile;
  /** Extra parameters for the worker-side kinds (probes, rewrites, waits). */
  params?: Record<string, string | number | boolean | string[]>;
}

/**
 * `cutover`: the matrix is green (or overridden) and the operator says go; `dns`: DNS hosted
 * elsewhere, the operator changed the records at the provider; `registrar`: the operator changed
 * the zone's delegation (NS, glue) at the registrar; `domains`: the proxy's domains no
 * DNS record points here may be removed from its config; `cleanup`: the source may go.
 */
export type GateName = 'cutover' | 'dns' | 'registrar' | 'domains' | 'cleanup';
export const GATE_NAMES: readonly GateName[] = ['cutover', 'dns', 'registrar', 'domains', 'cleanup'];

export interface Phase {
  id: PhaseId;
  title: string;
  steps: Step[];
}

export interface Runbook {
  tenant: string;
  phases: Phase[];
  /** What a cancel before cutover runs, per container, in reverse order. */
  compensation: Step[];
}

/** All steps in order. */
export function allSteps(runbook: Runbook): Step[] {
  return runbook.phases.flatMap((p) => p.steps);
}

/** Every step of a phase, whatever container it concerns. */
export function phaseSteps(runbook: Runbook, phase: PhaseId): Step[] {
  return runbook.phases.find((p) => p.id === phase)?.steps ?? [];
}

/** The steps of one container in one phase (`undefined`: the tenant-wide ones). */
export function stepsOf(runbook: Runbook, phase: PhaseId, container?: string): Step[] {
  return runbook.phases.find((p) => p.id === phase)?.steps.filter((s) => s.container === container) ?? [];
}
