// The `cuda-llama` command on the real addon: a library error is its code and remedy with exit 1,
// never a stack; doctor's JSON on stdout. (Help, version and usage mistakes: test/unit/cli.test.ts.)
import { describe, expect, it } from 'vitest';
import { cli, stackLine } from '../helpers/cli.js';

describe('cuda-llama: errors from the library', () => {
  // These load the addon (tune asks whether CUDA is usable before it opens the file).
  it('tune on a missing model: the code, the message and the remedy, exit 1', () => {
    const { status, stdout, stderr } = cli('tune', '/no/such/model.gguf');
    expect(status).toBe(1);
    expect(stdout).toBe('');
    expect(stderr).toMatch(/^ERR_MODEL_NOT_FOUND: model file not found: \/no\/such\/model\.gguf\nRemedy: check the path/);
    expect(stderr).not.toMatch(stackLine);
  });

  it('doctor --cpu --no-probe --json: the report as JSON on stdout, exit 0', () => {
    const { status, stdout } = cli('doctor', '--cpu', '--no-probe', '--json');
    expect(status).toBe(0);
    const report = JSON.parse(stdout);
    expect(report.ok).toBe(true);
    expect(report.probes).toEqual([]);
  });
});
