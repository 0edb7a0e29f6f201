/**
 * The data: a warm pull while the source runs, the final delta once it is stopped, the move to its
 * final place, a bit-for-bit check against the source, the push into the container and its checks.
 */
import type { ContainerPlan } from '../plan/schema';
import type { Step } from './model';
import { hasData, step, type Ctx, type StepInit } from './commands';
import { CONTAINER_CHECK_SCRIPT, CONTAINER_OWNERS_SCRIPT, LISTING_SCRIPT, MANIFEST_SCRIPT, OWNERS_LISTING_SCRIPT, SHIFT_IDS_SCRIPT, SHIFTED_CHECK_SCRIPT } from './scripts';
import { ph, pinnedAddress, q, sh } from './shell';

function rsyncPull(ctx: Ctx, c: ContainerPlan, bwlimit?: string): string {
  const src = `${ctx.plan.hosts.source.user}@${pinnedAddress(ctx.plan.hosts.source.address, 'source')}:${ctx.sourceDataOf(c)}/`;
  // Numeric IDs, hard links, ACLs and xattrs as the source has them: nothing flattened.
  const limit = bwlimit ? [`--bwlimit=${bwlimit}`] : [];
  return `mkdir -p ${q(ctx.stagingOf(c))} && ${sh('rsync', '-aHAX', '--numeric-ids', '-z', '--partial', '--delete', ...limit, '--info=progress2', '-e', ctx.sshToSource, src, `${ctx.stagingOf(c)}/`)}`;
}

export function presync(ctx: Ctx, c: ContainerPlan): Step[] {
  if (!hasData(c)) return [];
  return [
    step(ctx, {
      id: `presync/${c.name}/rsync`,
      phase: 'presync',
      container: c.name,
      title: `Warm pull of ${ctx.sourceDataOf(c)} while ${ctx.sourceName(c)} runs`,
      host: 'destination',
      kind: 'run',
      // rsync's 24 ("some files vanished before they could be transferred") is what a running
      // source does (caches, ACME challenge tokens); the final pull, source stopped, takes the rest.
      command: `${rsyncPull(ctx, c, ctx.plan.data.warmBandwidthLimit)} || [ $? -eq 24 ]`,
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
  // A stateless container: nothing on the host to carry over.
  if (!hasData(c)) return [];
  const { plan } = ctx;
  const s = (init: Omit<StepInit, 'phase' | 'container' | 'host'>) => step(ctx, { phase: 'data', container: c.name, host: 'destination', ...init });
  const inContainer = ctx.dataPathOf(c);
  const hostDigest = sh('sh', '-c', MANIFEST_SCRIPT, 'manifest', ctx.finalOf(c), ...c.dataDirs);
  // Every file of the final copy, in the container with the same content; files the container's
  // own services changed since the push (newer mtime: tar keeps the source's) are counted, not failed.
  const containerMatches =
    `${sh('sh', '-c', LISTING_SCRIPT, 'listing', ctx.finalOf(c), ...c.dataDirs)} | ` + ctx.inside(c.name, 'sh', '-c', CONTAINER_CHECK_SCRIPT, 'check', inContainer);
  // Every pushed path with the numeric owner, group and mode of the host's final copy (ownership
  // is the source's, never flattened).
  const ownersMatch =
    `${sh('sh', '-c', OWNERS_LISTING_SCRIPT, 'owners', ctx.finalOf(c), ...c.dataDirs)} | ` + ctx.inside(c.name, 'sh', '-c', CONTAINER_OWNERS_SCRIPT, 'check-owners', inContainer);
  const shift = ph('idshift', c.name);
  return [
    s({ id: `data/${c.name}/final-sync`, title: `Final delta pull of ${c.name}'s data (source stopped)`, kind: 'run', command: rsyncPull(ctx, c), check: dataMoved(ctx, c), profile: 'transfer' }),
    s({
      id: `data/${c.name}/move`,
      title: `Move ${c.name}'s data to ${ctx.finalOf(c)}`,
      kind: 'run',
      command: sh(
        'sh',
        '-c',
        'mkdir -p "$2" && if [ -d "$3" ]; then rsync -aHAX --numeric-ids --delete "$1/" "$3/" && rm -rf "$1"; else mv "$1" "$3"; fi',
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
      id: `data/${c.name}/shift-ids`,
      title: `Owners of ${c.name}'s final copy as the container sees them (source idmap shift ${shift} taken off)`,
      kind: 'run',
      command: sh('bash', '-c', SHIFT_IDS_SCRIPT, 'shift-ids', ctx.finalOf(c), shift),
      check: sh('bash', '-c', SHIFTED_CHECK_SCRIPT, 'shifted', ctx.finalOf(c), shift),
      profile: 'transfer',
    }),
    s({
      id: `data/${c.name}/push`,
      title: `Push the data into ${c.name}:${inContainer} (copied in, not a disk device; numeric owners kept)`,
      kind: 'run',
      // The guide's `incus file push --recursive DIR/. C/opt/gbo/` nests DIR's name under /opt/gbo
      // on Incus 6 (its "fix directory structure" step); a tar stream, its other method, does not.
      // tar keeps hard links; --numeric-owner carries IDs, not names the container may map elsewhere.
      command: `${ctx.inside(c.name, 'mkdir', '-p', inContainer)} && tar -C ${q(ctx.finalOf(c))} --numeric-owner -cf - . | ${ctx.inside(c.name, 'tar', '-C', inContainer, '--numeric-owner', '-xpf', '-')}`,
      check: `${containerMatches} && ${ownersMatch}`,
      profile: 'transfer',
    }),
    s({
      id: `data/${c.name}/verify-owners`,
      title: `Every pushed path in ${c.name} has the numeric owner, group and mode of the source`,
      kind: 'run',
      command: ownersMatch,
      refuses: true,
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
