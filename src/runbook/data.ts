/**
 * The data: a warm pull while the source runs, the final delta once it is stopped, the move to its
 * final place, a bit-for-bit check against the source, the push into the container and its checks.
 */
import type { ContainerPlan } from '../plan/schema';
import type { Step } from './model';
import { step, type Ctx, type StepInit } from './commands';
import { CONTAINER_CHECK_SCRIPT, LISTING_SCRIPT, MANIFEST_SCRIPT, PATHS_SCRIPT } from './scripts';
import { ph, pinnedAddress, q, sh } from './shell';

function rsyncPull(ctx: Ctx, c: ContainerPlan): string {
  const src = `${ctx.plan.hosts.source.user}@${pinnedAddress(ctx.plan.hosts.source.address, 'source')}:${ctx.sourceDataOf(c)}/`;
  return `mkdir -p ${q(ctx.stagingOf(c))} && ${sh('rsync', '-az', '--partial', '--delete', '--numeric-ids', '--info=progress2', '-e', ctx.sshToSource, src, `${ctx.stagingOf(c)}/`)}`;
}

export function presync(ctx: Ctx, c: ContainerPlan): Step[] {
  return [
    step(ctx, {
      id: `presync/${c.name}/rsync`,
      phase: 'presync',
      container: c.name,
      title: `Warm pull of ${ctx.sourceDataOf(c)} while ${ctx.sourceName(c)} runs`,
      host: 'destination',
      kind: 'run',
      command: rsyncPull(ctx, c),
      check: dataMoved(ctx, c),
      profile: 'transfer',
    }),
  ];
}

/** The data already sits in its final place (a re-run after `data/<c>/move` pulls nothing again). */
function dataMoved(ctx: Ctx, c: ContainerPlan): string {
  return `test -d ${q(ctx.finalOf(c))} && test ! -e ${q(ctx.stagingOf(c))}`;
}

export function data(ctx: Ctx, c: ContainerPlan): Step[] {
  const { plan } = ctx;
  const s = (init: Omit<StepInit, 'phase' | 'container' | 'host'>) => step(ctx, { phase: 'data', container: c.name, host: 'destination', ...init });
  const inContainer = plan.data.containerPath;
  const hostDigest = sh('sh', '-c', MANIFEST_SCRIPT, 'manifest', ctx.finalOf(c), ...c.dataDirs);
  // Every file of the final copy, in the container with the same content; files the container's
  // own services changed since the push (newer mtime: tar keeps the source's) are counted, not failed.
  const containerMatches =
    `${sh('sh', '-c', LISTING_SCRIPT, 'listing', ctx.finalOf(c), ...c.dataDirs)} | ` + ctx.inside(c.name, 'sh', '-c', CONTAINER_CHECK_SCRIPT, 'check', inContainer);
  // Only what was pushed: files the container's services created since belong to whoever made them.
  const ownerCheck =
    `${sh('sh', '-c', PATHS_SCRIPT, 'paths', ctx.finalOf(c), ...c.dataDirs)} | ` +
    ctx.inside(c.name, 'sh', '-c', `cd ${q(inContainer)} && owner=$(id -u ${q(c.owner)} >/dev/null 2>&1 && echo ${q(c.owner)} || echo ${q(c.ownerFallback)}); ` + 'while IFS= read -r f; do [ ! -e "$f" ] || [ "$(stat -c %U "$f")" = "$owner" ] || exit 1; done');
  return [
    s({ id: `data/${c.name}/final-sync`, title: `Final delta pull of ${c.name}'s data (source stopped)`, kind: 'run', command: rsyncPull(ctx, c), check: dataMoved(ctx, c), profile: 'transfer' }),
    s({
      id: `data/${c.name}/move`,
      title: `Move ${c.name}'s data to ${ctx.finalOf(c)}`,
      kind: 'run',
      command: sh(
        'sh',
        '-c',
        'mkdir -p "$2" && if [ -d "$3" ]; then rsync -a --delete "$1/" "$3/" && rm -rf "$1"; else mv "$1" "$3"; fi',
        'move',
        ctx.stagingOf(c),
        `${plan.data.tenantsRoot}/${plan.tenant}`,
        ctx.finalOf(c),
      ),
      check: dataMoved(ctx, c),
    }),
    s({
      id: `data/${c.name}/verify-transfer`,
      title: `The pulled copy of ${c.name}'s data matches the source checksums bit for bit`,
      kind: 'run',
      command: `test "$(${hostDigest})" = ${ph('digest', c.name)}`,
      refuses: true,
      profile: 'transfer',
    }),
    s({
      id: `data/${c.name}/push`,
      title: `Push the data into ${c.name}:${inContainer} (copied in, not a disk device)`,
      kind: 'run',
      // The guide's `incus file push --recursive DIR/. C/opt/gbo/` nests DIR's name under /opt/gbo
      // on Incus 6 (its "fix directory structure" step); a tar stream, its other method, does not.
      command: `${ctx.inside(c.name, 'mkdir', '-p', inContainer)} && tar -C ${q(ctx.finalOf(c))} -cf - . | ${ctx.inside(c.name, 'tar', '-C', inContainer, '-xf', '-')}`,
      check: containerMatches,
      profile: 'transfer',
    }),
    s({
      id: `data/${c.name}/chown`,
      title: `${inContainer} owned by ${c.owner}, else ${c.ownerFallback}`,
      kind: 'run',
      command: ctx.inside(
        c.name,
        'sh',
        '-c',
        `chown -R ${q(`${c.owner}:${c.owner}`)} ${q(inContainer)} 2>/dev/null || chown -R ${q(`${c.ownerFallback}:${c.ownerFallback}`)} ${q(inContainer)}`,
      ),
      check: ownerCheck,
      profile: 'transfer',
    }),
    s({
      id: `data/${c.name}/verify`,
      title: `Every file in ${c.name} matches the source checksums`,
      kind: 'run',
      command: containerMatches,
      refuses: true,
      profile: 'transfer',
    }),
  ];
}
