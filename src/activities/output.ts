/**
 * What of a command's output may enter workflow history: trimmed to the lines that matter and
 * redacted where it could carry secrets (private keys, Vault unseal keys and tokens, passwords).
 */

const REDACTIONS: [RegExp, string][] = [
  [/-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----/g, '[private key redacted]'],
  [/(unseal[ _-]?key[^:=\n]*[:=]\s*)\S+/gi, '$1[redacted]'],
  [/(root[ _-]?token[^:=\n]*[:=]\s*)\S+/gi, '$1[redacted]'],
  [/\b(hvs|s)\.[A-Za-z0-9]{20,}\b/g, '[vault token redacted]'],
  [/((?:password|passwd|secret|token)\s*[:=]\s*)\S+/gi, '$1[redacted]'],
  [/(:\/\/[^:/@\s]+:)[^@\s]+@/g, '$1[redacted]@'],
];

export function redact(text: string): string {
  return REDACTIONS.reduce((t, [re, by]) => t.replace(re, by), text);
}

/** Keeps the first and last lines of long output, at most `max` characters, redacted. */
export function trimOutput(text: string, max = 2000): string {
  const clean = redact(text.replace(/\r/g, '\n').replace(/\n{2,}/g, '\n').trimEnd());
  if (clean.length <= max) return clean;
  const head = clean.slice(0, Math.floor(max * 0.3));
  const tail = clean.slice(clean.length - Math.floor(max * 0.6));
  return `${head.slice(0, head.lastIndexOf('\n') + 1 || head.length)}[... ${clean.length - head.length - tail.length} characters trimmed ...]\n${tail.slice(tail.indexOf('\n') + 1)}`;
}

/** The stderr lines that explain a failure: error-looking lines first, else the last few. */
export function relevantLines(stderr: string, count = 6): string {
  const lines = redact(stderr).split('\n').map((l) => l.trim()).filter(Boolean);
  const errors = lines.filter((l) => /error|fail|denied|refused|not found|no such|invalid|cannot|unable/i.test(l));
  return (errors.length > 0 ? errors : lines).slice(-count).join('\n');
}
