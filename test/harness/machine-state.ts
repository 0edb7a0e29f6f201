/**
 * What of this machine the lab may touch, as text that can be compared: this machine's own
 * firewall (iptables/ip6tables/nft, root network namespace), network namespaces, links, routes, mounts,
 * daemon processes, and every file's metadata under /etc and /opt (and /run's top level).
 * test/lab takes it with the lab down before lab:up and again after lab:down.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';

/** The daemons a lab starts (and a few their helpers); a process of these names that was not there before is a leftover. */
export const LAB_DAEMONS = ['lxd', 'incusd', 'sshd', 'nsd', 'dnsmasq', 'caddy', 'forkproxy', 'lxcfs', 'lxc-monitord', 'pebble'];

const run = (cmd: string, args: string[]): string => {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 60_000 });
  return r.status === 0 ? r.stdout : `(${cmd} ${args.join(' ')}: exit ${r.status} ${r.stderr.trim()})`;
};

/** Rule sets without comments and packet counters (they change on their own). */
function firewall(): Record<string, string> {
  const clean = (s: string) => s.split('\n').filter((l) => l && !l.startsWith('#')).map((l) => l.replace(/\[\d+:\d+\]/g, '[-]')).join('\n');
  return {
    iptables: clean(run('iptables-save', [])),
    ip6tables: clean(run('ip6tables-save', [])),
    nft: run('nft', ['list', 'ruleset']),
  };
}

export interface Proc {
  pid: number;
  comm: string;
  cmdline: string;
  cgroup: string;
}

/** Processes of a lab: the lab root on their command line, or in a container's (or its monitor's) cgroup. */
export function labProcesses(root: string): Proc[] {
  return processes().filter((p) => p.pid !== process.pid && (p.cmdline.includes(`${root}/`) || /lxc\.(payload|monitor)|\/incus\//.test(p.cgroup)));
}
export function processes(): Proc[] {
  const out: Proc[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const comm = readFileSync(`/proc/${d}/comm`, 'utf8').trim();
      const cmdline = readFileSync(`/proc/${d}/cmdline`, 'utf8').split('\0').join(' ').trim();
      const cgroup = readFileSync(`/proc/${d}/cgroup`, 'utf8');
      out.push({ pid: Number(d), comm, cmdline, cgroup });
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

export interface MachineState {
  firewall: Record<string, string>;
  netns: string[];
  links: string[];
  routes: string[];
  mounts: string[];
  daemons: string[];
  files: string;
  run: string[];
}

export function machineState(): MachineState {
  return {
    firewall: firewall(),
    netns: run('ip', ['netns', 'list']).split('\n').filter(Boolean).map((l) => l.split(' ')[0]!).sort(),
    links: run('ip', ['-o', 'link', 'show']).split('\n').filter(Boolean).map((l) => l.split(':')[1]!.trim().split('@')[0]!).sort(),
    // The root namespace's routes (lab:up adds one to the destination's bridge via the veth);
    // without the lifetimes of router-advertised ones, which count down on their own.
    routes: [...run('ip', ['-4', 'route', 'show', 'table', 'all']).split('\n'), ...run('ip', ['-6', 'route', 'show', 'table', 'all']).split('\n')]
      .filter(Boolean).map((l) => l.trim().replace(/ expires \S+/, '')).sort(),
    mounts: readFileSync('/proc/self/mounts', 'utf8').split('\n').filter(Boolean).map((l) => l.split(' ').slice(0, 3).join(' ')).sort(),
    // (Other test suites run their own throwaway sshd/caddy/nsd from temporary directories: not the lab's.)
    daemons: processes().filter((p) => LAB_DAEMONS.includes(p.comm.replace(/:.*$/, '')) && !p.cmdline.includes(`${tmpdir()}/`)).map((p) => `${p.pid} ${p.comm}`).sort(),
    // Type, size, mtime, mode, owner and link target of everything under /etc and /opt.
    files: execFileSync('sh', ['-c', "find /etc /opt -xdev -printf '%p %y %s %T@ %m %U:%G %l\\n' 2>/dev/null | LC_ALL=C sort | sha256sum"], { encoding: 'utf8' }).trim(),
    run: readdirSync('/run').sort(),
  };
}

/** The listing behind `files`, to show what differs when the hashes do. */
export function fileListing(): string[] {
  return execFileSync('sh', ['-c', "find /etc /opt -xdev -printf '%p %y %s %T@ %m %U:%G %l\\n' 2>/dev/null | LC_ALL=C sort"], { encoding: 'utf8', maxBuffer: 256 * 1024 * 1024 }).split('\n');
}
