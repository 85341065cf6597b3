/**
 * Reads the guest's serial console: splits the byte stream into lines (chunks may cut a line
 * anywhere), drops the serial line's '\r', and recognises the markers guest/init.sh prints:
 *   @@vcrypto:begin@@        -> the command starts
 *   @@vcrypto:exit=<code>@@  -> the command's exit status (0..255); it may follow the command's
 *                               last output on the same line when that lacked a newline
 */

export const MARKER_BEGIN = '@@vcrypto:begin@@';
/** The exit marker ends a line; text before it is the command's last line without a newline. */
const EXIT_RE = /^(.*?)@@vcrypto:exit=(\d{1,3})@@$/;

export type ConsoleEvent =
  | { readonly kind: 'boot'; readonly line: string }
  | { readonly kind: 'begin' }
  | { readonly kind: 'output'; readonly line: string }
  | { readonly kind: 'exit'; readonly code: number };

/** Incremental console parser: feed chunks, get events; `end()` flushes a final partial line. */
export class ConsoleReader {
  private pending = '';
  private begun = false;
  private exited = false;

  push(chunk: string): ConsoleEvent[] {
    this.pending += chunk;
    const events: ConsoleEvent[] = [];
    let nl: number;
    while ((nl = this.pending.indexOf('\n')) >= 0) {
      const line = this.pending.slice(0, nl);
      this.pending = this.pending.slice(nl + 1);
      this.line(line, events);
    }
    return events;
  }

  end(): ConsoleEvent[] {
    const events: ConsoleEvent[] = [];
    if (this.pending !== '') this.line(this.pending, events);
    this.pending = '';
    return events;
  }

  private line(raw: string, events: ConsoleEvent[]): void {
    const line = raw.replaceAll('\r', '');
    const trimmed = line.trim();
    if (!this.begun && trimmed === MARKER_BEGIN) {
      this.begun = true;
      events.push({ kind: 'begin' });
      return;
    }
    const exit = this.begun && !this.exited ? EXIT_RE.exec(line.trimEnd()) : null;
    if (exit) {
      const code = Number(exit[2]);
      if (code <= 255) {
        this.exited = true;
        if (exit[1] !== '' && exit[1]?.trim() !== '') events.push({ kind: 'output', line: exit[1] ?? '' });
        events.push({ kind: 'exit', code });
        return;
      }
    }
    events.push(this.begun && !this.exited ? { kind: 'output', line } : { kind: 'boot', line });
  }
}
