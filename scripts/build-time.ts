// How long a release build took, across attempts. A CUDA release build runs for hours and may be
// interrupted (a reboot, a killed shell, a lost machine); ninja resumes it, and its time is the sum
// of its attempts. Each attempt is recorded in a state file in the build folder: its start, then a
// heartbeat every 30 s, then its end. A killed attempt has no end and counts up to its last
// heartbeat (at most 30 s lost). Runs from before the state file existed (a build started by hand)
// are read from ninja's own log when the state file is made; those count from their first to
// their last finished step. Pure functions: scripts/release-cuda.ts does the file and clock work.

export const HEARTBEAT_MS = 30_000;
/** An attempt without an end whose heartbeat is older than this is taken as dead (killed). */
export const STALE_AFTER_MS = 3 * HEARTBEAT_MS;
export const STATE_FILE = 'release-build-state.json';

export interface BuildAttempt {
  pid: number;
  /** ISO times. */
  start: string;
  heartbeat: string;
  end?: string;
  /** The build's exit status, or the signal that ended it. */
  exit?: number | string;
}

/** A run of ninja found in .ninja_log, from before the state file (epoch ms). */
export interface NinjaRun {
  start: number;
  end: number;
  steps: number;
}

export interface BuildState {
  /** The architecture list the attempts built (a new list starts a new state). */
  architectures: string;
  created: string;
  attempts: BuildAttempt[];
  /** Runs read from .ninja_log when the state was made. */
  earlier: NinjaRun[];
}

/** The state for a new attempt: `state` continued, or a fresh one when there is none or it is for another list. */
export function startAttempt(
  state: BuildState | null,
  architectures: string,
  now: Date,
  pid: number,
  earlier: () => NinjaRun[],
): BuildState {
  const base: BuildState =
    state && state.architectures === architectures
      ? state
      : { architectures, created: now.toISOString(), attempts: [], earlier: earlier() };
  const at = now.toISOString();
  return { ...base, attempts: [...base.attempts, { pid, start: at, heartbeat: at }] };
}

function updateLast(state: BuildState, update: (attempt: BuildAttempt) => BuildAttempt): BuildState {
  const last = state.attempts.at(-1);
  if (!last) throw new RangeError('the build state has no attempt to update');
  return { ...state, attempts: [...state.attempts.slice(0, -1), update(last)] };
}

export const heartbeat = (state: BuildState, now: Date): BuildState => updateLast(state, (a) => ({ ...a, heartbeat: now.toISOString() }));

export const finishAttempt = (state: BuildState, now: Date, exit: number | string): BuildState =>
  updateLast(state, (a) => ({ ...a, heartbeat: now.toISOString(), end: now.toISOString(), exit }));

/** The attempt that is still running (no end, a fresh heartbeat, a live process), or null: a second build in the same folder would race it. */
export function runningAttempt(state: BuildState | null, now: Date, alive: (pid: number) => boolean): BuildAttempt | null {
  const last = state?.attempts.at(-1);
  if (!last || last.end !== undefined) return null;
  return now.getTime() - Date.parse(last.heartbeat) < STALE_AFTER_MS && alive(last.pid) ? last : null;
}

/**
 * The runs of ninja recorded in a .ninja_log (format v5/v6: start ms, end ms, output mtime, output,
 * command hash; the times are relative to that run's start). Each step's run started at its
 * output's mtime less its end time; steps whose starts lie within a minute of each other are one
 * run. Steps without an mtime (restat, phony) are left out.
 */
export function ninjaLogRuns(log: string): NinjaRun[] {
  const steps: { runStart: number; mtime: number }[] = [];
  for (const line of log.split('\n')) {
    if (line.startsWith('#') || !line.trim()) continue;
    const [, end, mtime] = line.split('\t');
    const endMs = Number(end);
    // mtime is nanoseconds since the epoch (ninja 1.9 and later); 0 when unknown.
    if (!Number.isFinite(endMs) || !/^\d+$/.test(mtime ?? '')) continue;
    const mtimeMs = Number(BigInt(mtime!) / 1_000_000n);
    if (mtimeMs <= 0) continue;
    steps.push({ runStart: mtimeMs - endMs, mtime: mtimeMs });
  }
  steps.sort((a, b) => a.runStart - b.runStart);
  const runs: NinjaRun[] = [];
  for (const step of steps) {
    const run = runs.at(-1);
    if (run && step.runStart - run.start < 60_000) {
      run.end = Math.max(run.end, step.mtime);
      run.steps++;
    } else {
      runs.push({ start: step.runStart, end: step.mtime, steps: 1 });
    }
  }
  return runs;
}

export interface BuildTime {
  /** Summed wall time of every attempt, seconds. */
  seconds: number;
  attempts: number;
  /** Of `attempts`, those found in .ninja_log (from before the state file). */
  fromNinjaLog: number;
  /** Of `attempts`, those killed (no recorded end), counted to their last heartbeat. */
  killed: number;
}

/** The summed time and attempts of a build's state. */
export function buildTime(state: BuildState): BuildTime {
  let ms = 0;
  let killed = 0;
  for (const attempt of state.attempts) {
    if (attempt.end === undefined) killed++;
    ms += Date.parse(attempt.end ?? attempt.heartbeat) - Date.parse(attempt.start);
  }
  for (const run of state.earlier) ms += run.end - run.start;
  return {
    seconds: Math.round(ms / 1000),
    attempts: state.attempts.length + state.earlier.length,
    fromNinjaLog: state.earlier.length,
    killed,
  };
}

/** "5 h 12 min over 3 attempts (1 killed, 1 from .ninja_log)". */
export function describeBuildTime(time: BuildTime): string {
  const hours = Math.floor(time.seconds / 3600);
  const minutes = Math.round((time.seconds % 3600) / 60);
  const span = hours > 0 ? `${hours} h ${minutes} min` : time.seconds >= 60 ? `${minutes} min` : `${time.seconds} s`;
  const notes = [time.killed ? `${time.killed} killed` : '', time.fromNinjaLog ? `${time.fromNinjaLog} from .ninja_log` : ''].filter(
    Boolean,
  );
  return `${span} over ${time.attempts} attempt${time.attempts === 1 ? '' : 's'}${notes.length ? ` (${notes.join(', ')})` : ''}`;
}

/** Whether a process's arguments are a cmake-js build into `buildDirName` (what scripts/install.mjs runs). */
export function isBuildInto(argv: string[], buildDirName: string): boolean {
  const out = argv.indexOf('--out');
  return argv.some((a) => /cmake-js/.test(a)) && out >= 0 && argv[out + 1] === buildDirName;
}
