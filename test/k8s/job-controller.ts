import type { IJob, IPodFailurePolicyRule } from 'kubernetes-models/batch/v1';

/** How a pod of a Job ended, as the Job controller sees it. */
export interface PodEnd {
  /** The exit code of the Job's main container (0: succeeded). */
  exitCode: number;
  /** The pod carried the DisruptionTarget condition (evicted, preempted, its node drained). */
  disrupted?: boolean;
}

/** What the controller does next about the pod's index. */
export type JobDecision =
  | 'succeeded'
  /** A new pod for the index (after the failed one is gone). */
  | 'replace'
  | 'index-failed'
  | 'job-failed';

/**
 * The Job controller's pod failure handling, as Kubernetes (≥ 1.33) documents it, for the
 * fields the manifests use: podFailurePolicy rules in order (the first match decides: Ignore
 * replaces without counting, FailJob, FailIndex, Count; no match counts), then the count against
 * backoffLimitPerIndex (per index, Indexed Jobs) or backoffLimit (the whole Job). A failure
 * beyond the limit fails the index, or the Job. Exit code 0 is success (rules never see it).
 */
export class JobController {
  private readonly failures = new Map<number, number>();
  private total = 0;

  constructor(private readonly job: IJob) {}

  decide(index: number, end: PodEnd): JobDecision {
    if (end.exitCode === 0 && !end.disrupted) return 'succeeded';
    const rule = (this.job.spec?.podFailurePolicy?.rules ?? []).find((r) =>
      matches(r, end, this.mainContainer()),
    );
    const action = rule?.action ?? 'Count';
    if (action === 'Ignore') return 'replace';
    if (action === 'FailJob') return 'job-failed';
    if (action === 'FailIndex') return 'index-failed';
    const perIndex = this.job.spec?.backoffLimitPerIndex;
    if (perIndex !== undefined) {
      const failed = (this.failures.get(index) ?? 0) + 1;
      this.failures.set(index, failed);
      return failed > perIndex ? 'index-failed' : 'replace';
    }
    this.total++;
    return this.total > (this.job.spec?.backoffLimit ?? 6) ? 'job-failed' : 'replace';
  }

  private mainContainer(): string {
    return this.job.spec?.template.spec?.containers[0].name ?? '';
  }
}

function matches(rule: IPodFailurePolicyRule, end: PodEnd, container: string): boolean {
  if (rule.onPodConditions)
    return rule.onPodConditions.some(
      (c) =>
        c.type === 'DisruptionTarget' && (c.status ?? 'True') === 'True' && end.disrupted === true,
    );
  const codes = rule.onExitCodes;
  if (!codes || end.exitCode === 0) return false;
  if (codes.containerName !== undefined && codes.containerName !== container) return false;
  const listed = codes.values.includes(end.exitCode);
  return codes.operator === 'In' ? listed : !listed;
}
