/**
 * A chat failure the user reads as one line (cannot listen, cannot connect, stdout closed).
 * The CLI turns it into a non-zero exit with the message, never a stack trace.
 */
export class ChatError extends Error {
  override readonly name = 'ChatError';
}

/** The first line of an error's message, for a one-line status or error report. */
export function errorLine(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  return message.split('\n')[0] ?? message;
}
