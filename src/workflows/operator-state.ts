/**
 * What operators see and steer, in one place both workflows share: the step log, decisions on
 * failed steps, pauses, waits, approvals, the verification matrix and the undo report, with their
 * query, update and signal handlers.
 *
 * `migrateTenant` keeps the one record of the migration (`MigrationState`): its own steps, and
 * every step and value its container children report as they happen. A child keeps a
 * `StepControl` for its container: it waits there for the operator's decision on a failed step
 * (forwarded by the parent) and holds at its next step boundary while the migration is paused.
 */
import {
  condition,
  getExternalWorkflowHandle,
  setCurrentDetails,
  setHandler,
  upsertSearchAttributes,
  workflowInfo,
  type ChildWorkflowHandle,
} from '@temporalio/workflow';
import type { Mode } from '../activities/steps';
import type { Plan } from '../plan/schema';
import { allSteps, CONTAINER_PHASES, GATE_NAMES, type GateName, type PhaseId, type Runbook, type Step } from '../runbook/model';
import {
  approveUpdate,
  childControlSignal,
  extendUpdate,
  wakeUpdate,
  childReportSignal,
  pauseUpdate,
  PHASE_ATTR,
  resumeUpdate,
  retryStepUpdate,
  reverifyUpdate,
  skipStepUpdate,
  statusQuery,
  valuesQuery,
  type Approval,
  type ChildReport,
  type ContainerStatus,
  type Decision,
  type MatrixEntry,
  type MigrationStatus,
  type StepState,
  type UndoFailure,
} from './messages';
import { derivedValues } from '../runbook/values';
import { containerDetails, tenantDetails } from './details';
import { hostTargets, newStepLog, type RunContext, type StepLog } from './run-steps';
import { durationMs } from './wait-steps';
import { Waits } from './waits';

const now = () => new Date().toISOString();
const required = (field: string, value: string | undefined, what: string) => {
  if (!value?.trim()) throw new Error(`${field}: ${what} is required`);
};

/** Step log, pause and operator decisions: what a run of steps needs to wait for people. */
export class StepControl {
  readonly log: StepLog;
  paused = false;
  waitingFor: string | undefined;
  /** Bounded waits an operator can wake or extend (only the tenant's phases have wait steps). */
  readonly waits = new Waits();
  /** Decisions taken but not yet acted on, by step. */
  protected readonly pending = new Map<string, Decision>();

  constructor(values: Record<string, string> = {}) {
    this.log = newStepLog(values);
  }

  /** How a chain of steps runs under this control: failures wait for `decide`, pauses hold it. */
  runContext(plan: Plan, mode: Mode, onFailure: 'wait' | 'fail' = 'wait'): RunContext {
    return { mode, hosts: hostTargets(plan), log: this.log, onFailure, decide: this.decide, whilePaused: this.whilePaused, skippedInChain: [], waits: this.waits };
  }

  /**
   * Waits for an operator (a resume, a decision), showing `label` in status meanwhile. Bounded
   * waits (gates, DNS, certificates, the window) are `waits`, which an operator can wake or extend.
   */
  async waitFor(label: string, predicate: () => boolean): Promise<void> {
    this.waitingFor = label;
    try {
      await condition(predicate);
    } finally {
      this.waitingFor = undefined;
    }
  }

  /** Holds at a step boundary while paused. */
  readonly whilePaused = async (): Promise<void> => {
    if (this.paused) await this.waitFor('resume (paused by an operator)', () => !this.paused);
  };

  /** Waits for an operator's retry or skip of a failed step. */
  readonly decide = async (stepId: string): Promise<Decision> => {
    await this.waitFor(`an operator: retryStep or skipStep ${stepId}`, () => this.pending.has(stepId));
    const d = this.pending.get(stepId)!;
    this.pending.delete(stepId);
    return d;
  };
}

/** The container child's side: decisions and pauses come from the parent; progress goes to it. */
export class ContainerControl extends StepControl {
  private readonly parent = workflowInfo().parent;
  private unsent: Omit<ChildReport, 'container'> = {};

  constructor(
    private readonly container: string,
    values: Record<string, string>,
    paused: boolean,
  ) {
    super(values);
    this.paused = paused;
    setHandler(childControlSignal, (c) => {
      if (c.kind === 'pause') this.paused = c.paused;
      else this.pending.set(c.stepId, c.decision);
    });
  }

  /**
   * Reports a step's state to the parent: at once for a start or a failure (status shows what
   * runs, the operator sees what failed), together with the next report otherwise, so a step costs
   * the parent's history about one signal.
   */
  readonly onStep = async (step: Step, state: StepState): Promise<void> => {
    setCurrentDetails(containerDetails(this.container, step.id.split('/')[0] ?? '', state === 'running' ? step.id : undefined, this.log.failures, this.waitingFor));
    const u = this.unsent;
    u.states = { ...u.states, [step.id]: state };
    if (state === 'running') u.current = step.id;
    if (state === 'failed') u.failures = { ...u.failures, [step.id]: this.log.failures[step.id] ?? '' };
    if (state === 'skipped') u.skipped = this.log.skipped.filter((s) => s.id === step.id);
    if (step.captureAs && this.log.values[step.captureAs.key] !== undefined) {
      const key = step.captureAs.key;
      u.values = { ...u.values, [key]: this.log.values[key]!, ...derivedValues(key, this.log.values[key]!) };
    }
    if (state === 'running' || state === 'failed') await this.flush();
  };

  /** A value learned outside a step; the parent hears it with the next report. */
  learn(key: string, value: string): void {
    this.log.values[key] = value;
    this.unsent.values = { ...this.unsent.values, [key]: value };
  }

  /** Sends what the parent has not heard yet (at the end of each phase and of the child). */
  async flush(current?: null): Promise<void> {
    const report = { ...this.unsent, ...(current === null ? { current: null } : {}) };
    this.unsent = {};
    if (!this.parent || Object.keys(report).length === 0) return;
    await getExternalWorkflowHandle(this.parent.workflowId).signal(childReportSignal, { container: this.container, ...report });
  }
}

/** The migration's own record and everything the operator's messages act on. */
export class MigrationState extends StepControl {
  phase: MigrationStatus['phase'] = 'preflight';
  /** The gate the migration waits at right now: approvals are only taken there. */
  atGate: GateName | undefined;
  /** What that gate asks of the operator (the dns gate: the records to change at the provider). */
  gateTitle: string | undefined;
  readonly approvals: Approval[] = [];
  readonly decisions: MigrationStatus['decisions'] = [];
  readonly reverifications: MigrationStatus['reverifications'] = [];
  reverifyPending = false;
  readonly containers: Record<string, ContainerStatus>;
  matrix: MatrixEntry[] = [];
  readonly undoFailures: UndoFailure[] = [];
  servicesAnsweringAt: number | undefined;
  /** Running children, to forward decisions and pauses to. */
  readonly children = new Map<string, ChildWorkflowHandle<never>>();
  private readonly known: Set<string>;
  /** Values that are a record of the source as it was: the first one reported stands. */
  private readonly onceKeys: Set<string>;

  constructor(
    private readonly plan: Plan,
    private readonly mode: Mode,
    runbook: Runbook,
    values: Record<string, string>,
  ) {
    super(values);
    const steps = allSteps(runbook);
    this.known = new Set(steps.map((s) => s.id));
    this.onceKeys = new Set(steps.filter((s) => s.once && s.captureAs).map((s) => s.captureAs!.key));
    this.containers = Object.fromEntries(plan.containers.map((c) => [c.name, { phase: 'pending' as const }]));
    this.waits.onChange = () => this.refresh();
  }

  /** The tenant's steps report here too, so the Web UI's details follow every step. */
  override runContext(plan: Plan, mode: Mode, onFailure: 'wait' | 'fail' = 'wait'): RunContext {
    return { ...super.runContext(plan, mode, onFailure), onStep: async () => this.refresh() };
  }

  /** The Web UI's current details (Markdown) from the status as it stands; no history cost. */
  refresh(): void {
    setCurrentDetails(tenantDetails(this.status()));
  }

  enter(phase: MigrationStatus['phase']): void {
    this.phase = phase;
    upsertSearchAttributes([{ key: PHASE_ATTR, value: phase }]);
    this.refresh();
  }

  redCells(): MatrixEntry[] {
    return this.matrix.filter((m) => m.required && !m.ok && !m.notProbed);
  }

  /** Source stopped → services answering on the destination (so far, if not over yet). */
  downtimeMs(): number | undefined {
    const stops = Object.entries(this.log.values)
      .filter(([k]) => k.startsWith('stoppedAt:'))
      .map(([, v]) => Date.parse(v));
    return stops.length ? (this.servicesAnsweringAt ?? Date.now()) - Math.min(...stops) : undefined;
  }

  status(): MigrationStatus {
    const { log } = this;
    return {
      tenant: this.plan.tenant,
      mode: this.mode,
      phase: this.phase,
      paused: this.paused,
      waitingFor: this.waitingFor ?? this.waits.describe() ?? this.childWaiting(),
      waits: [...this.waits.active(), ...this.waits.records.filter((w) => w.state !== 'waiting')],
      steps: { ...log.states },
      failures: { ...log.failures },
      skipped: [...log.skipped],
      pauses: [...log.pauses],
      containers: this.containers,
      decisions: this.decisions,
      reverifications: this.reverifications,
      undoFailures: this.undoFailures,
      matrix: this.matrix,
      approvals: this.approvals,
      ...(this.atGate ? { gate: { name: this.atGate, title: this.gateTitle ?? '' } } : {}),
      downtimeMs: this.downtimeMs(),
      downtimeOver: this.servicesAnsweringAt !== undefined,
    };
  }

  /** A failed child step waits for the operator even while the parent waits for its children. */
  private childWaiting(): string | undefined {
    if (this.phase === 'compensating' || this.phase === 'compensated' || this.phase === 'compensation-incomplete') return undefined;
    const failed = Object.keys(this.log.failures).filter((id) => this.log.states[id] === 'failed');
    return failed.length ? `an operator: retryStep or skipStep ${failed.join(', ')}` : undefined;
  }

  /** A child's report: step states, failures, skips and learned values, merged as they come. */
  merge(r: ChildReport): void {
    const { log } = this;
    for (const [id, state] of Object.entries(r.states ?? {})) {
      log.states[id] = state;
      if (state !== 'failed') delete log.failures[id];
    }
    Object.assign(log.failures, r.failures ?? {});
    for (const s of r.skipped ?? []) if (!log.skipped.some((x) => x.id === s.id)) log.skipped.push(s);
    for (const [k, v] of Object.entries(r.values ?? {})) if (!(this.onceKeys.has(k) && k in log.values)) log.values[k] = v;
    const c = this.containers[r.container];
    if (!c) return;
    if (r.current === null) delete c.step;
    else if (r.current) {
      c.step = r.current;
      c.phase = r.current.split('/')[0] as PhaseId;
    }
    if (Object.entries(r.states ?? {}).some(([, s]) => s === 'failed')) c.phase = 'failed';
    this.refresh();
  }

  /** The container whose child runs `stepId`, if a child runs it. */
  private childOf(stepId: string): string | undefined {
    const [phase, container] = stepId.split('/');
    return CONTAINER_PHASES.includes(phase as PhaseId) && container && this.children.has(container) ? container : undefined;
  }

  private failedStep(stepId: string): void {
    if (!this.known.has(stepId)) throw new Error(`stepId: no step ${JSON.stringify(stepId)} in this migration`);
    if (this.log.states[stepId] !== 'failed') throw new Error(`stepId: ${stepId} is ${this.log.states[stepId] ?? 'pending'}, not failed`);
  }

  /** Acts on a decision where the step waits: in its container's child, or here. */
  private async decideStep(stepId: string, decision: Decision): Promise<void> {
    this.decisions.push({ stepId, ...decision, at: now() });
    // Taken: a second decision on the same failure is refused until the step fails again.
    this.log.states[stepId] = decision.action === 'skip' ? 'skipped' : 'pending';
    if (decision.action === 'skip') delete this.log.failures[stepId];
    this.refresh();
    const container = this.childOf(stepId);
    if (container) await this.children.get(container)!.signal(childControlSignal, { kind: 'decision', stepId, decision });
    else this.pending.set(stepId, decision);
  }

  private async setPaused(paused: boolean): Promise<void> {
    this.paused = paused;
    this.refresh();
    for (const child of this.children.values()) await child.signal(childControlSignal, { kind: 'pause', paused });
  }

  /** The operator's queries and updates, and the children's reports. */
  installHandlers(): void {
    setHandler(statusQuery, () => this.status());
    setHandler(valuesQuery, () => ({ ...this.log.values }));
    setHandler(childReportSignal, (r) => this.merge(r));
    setHandler(
      approveUpdate,
      ({ gate, by, reason, override }) => {
        const approval: Approval = { gate, by, reason, at: now(), ...(override ? { override: true } : {}) };
        this.approvals.push(approval);
        this.refresh();
        return approval;
      },
      {
        validator: ({ gate, by, reason, override }) => {
          if (!GATE_NAMES.includes(gate)) throw new Error(`gate: expected ${GATE_NAMES.map((g) => `"${g}"`).join(', ')}, got ${JSON.stringify(gate)}`);
          // override is for a red matrix, at the cutover gate only.
          if (override && gate !== 'cutover') throw new Error(`override: only the cutover gate takes an override (of a red verification matrix), not the ${gate} gate`);
          required('by', by, 'who approves');
          required('reason', reason, 'a reason');
          if (this.approvals.some((a) => a.gate === gate)) throw new Error(`gate "${gate}" is already approved`);
          if (this.atGate !== gate) throw new Error(`gate "${gate}": the migration is in phase "${this.phase}", not waiting at the ${gate} gate`);
          if (this.reverifyPending) throw new Error(`gate "${gate}": the verification matrix is being run again; approve when it is done`);
          const red = this.redCells();
          if (gate === 'cutover' && red.length > 0 && !override) {
            throw new Error(`gate "cutover": the verification matrix is red (${red.map((m) => `${m.container} ${m.service}${m.port ? ` ${m.port}` : ''}`).join(', ')}); fix and reverify, or approve with override to cut over anyway`);
          }
        },
      },
    );
    setHandler(retryStepUpdate, async ({ stepId, by }) => (await this.decideStep(stepId, { action: 'retry', by }), `retrying ${stepId}`), {
      validator: ({ stepId, by }) => {
        this.failedStep(stepId);
        required('by', by, 'who decides');
      },
    });
    setHandler(skipStepUpdate, async ({ stepId, by, reason }) => (await this.decideStep(stepId, { action: 'skip', by, reason }), `skipping ${stepId}`), {
      validator: ({ stepId, by, reason }) => {
        this.failedStep(stepId);
        required('by', by, 'who decides');
        if (!reason?.trim()) throw new Error('reason: skipping a step needs a reason; it is recorded');
      },
    });
    setHandler(
      pauseUpdate,
      async ({ by, reason }) => {
        this.log.pauses.push({ by, reason, at: now() });
        await this.setPaused(true);
        return `paused by ${by}`;
      },
      {
        validator: ({ by, reason }) => {
          if (this.paused) throw new Error('the migration is already paused');
          required('by', by, 'who pauses');
          required('reason', reason, 'a reason');
        },
      },
    );
    setHandler(
      resumeUpdate,
      async ({ by }) => {
        await this.setPaused(false);
        return `resumed by ${by}`;
      },
      {
        validator: ({ by }) => {
          if (!this.paused) throw new Error('the migration is not paused');
          required('by', by, 'who resumes');
        },
      },
    );
    setHandler(wakeUpdate, ({ wait, by, reason }) => this.waits.wake(wait, by, reason), {
      validator: ({ wait, by, reason }) => {
        required('by', by, 'who wakes the wait');
        required('reason', reason, 'a reason');
        this.waits.checkWake(wait);
      },
    });
    setHandler(extendUpdate, ({ wait, for: duration, by, reason }) => this.waits.extend(wait, durationMs(duration), by, reason), {
      validator: ({ wait, for: duration, by, reason }) => {
        required('by', by, 'who extends the wait');
        required('reason', reason, 'a reason');
        this.waits.checkExtend(wait, durationMs(duration));
      },
    });
    setHandler(
      reverifyUpdate,
      ({ by, reason }) => {
        this.reverifications.push({ by, reason, at: now() });
        this.reverifyPending = true;
        return 'verifying again; the cutover gate sees the new matrix';
      },
      {
        validator: ({ by, reason }) => {
          if (this.atGate !== 'cutover') throw new Error(`reverify: the migration is in phase "${this.phase}", not waiting at the cutover gate`);
          if (this.reverifyPending) throw new Error('reverify: a verification run is already under way');
          required('by', by, 'who asks');
          required('reason', reason, 'a reason');
        },
      },
    );
  }
}
