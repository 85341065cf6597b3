/**
 * Socket-path safety for `vcrypto device`: never take over a live device's socket, replace a stale
 * one left by a crashed device, and on exit remove the socket file only if it is still the one this
 * process created (a newer device may have replaced it: its file must survive our exit).
 */
import { lstatSync, unlinkSync } from 'node:fs';
import { connectUnix } from '../../sys/unix-socket.js';
import { SysError, errnoValues } from '../../sys/libc.js';

/** A live device already answers on the path. */
export class SocketInUseError extends Error {
  override readonly name = 'SocketInUseError';
  constructor(readonly path: string) {
    super(`${path}: a device is already serving this socket (stop it first, or choose another path)`);
  }
}

/** Identity of a file: device and inode numbers (a re-created socket gets a new inode). */
export interface FileIdentity {
  readonly dev: number;
  readonly ino: number;
}

const ENOENT = 2;

/**
 * Makes `path` free to bind: nothing there, or a stale socket (connect(2) is refused: nobody
 * listens) which is removed. Throws SocketInUseError when something accepts the connection, and
 * Error for any other kind of file (never removed). Returns true when a stale socket was removed.
 */
export function claimSocketPath(path: string): boolean {
  let isSocket: boolean;
  try {
    isSocket = lstatSync(path).isSocket();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
  if (!isSocket) throw new Error(`${path} exists and is not a socket`);
  try {
    connectUnix(path).close();
  } catch (err) {
    if (err instanceof SysError && err.errno === errnoValues.ECONNREFUSED) {
      unlinkSync(path);
      return true;
    }
    if (err instanceof SysError && err.errno === ENOENT) return false; // removed meanwhile
    throw err;
  }
  throw new SocketInUseError(path);
}

export function fileIdentity(path: string): FileIdentity | null {
  try {
    const st = lstatSync(path);
    return { dev: st.dev, ino: st.ino };
  } catch {
    return null;
  }
}

/** Removes `path` if it is still the file `mine` identified. Returns what happened. */
export function releaseSocketPath(path: string, mine: FileIdentity | null): 'removed' | 'gone' | 'replaced' {
  const now = fileIdentity(path);
  if (now === null) return 'gone';
  if (mine === null || now.dev !== mine.dev || now.ino !== mine.ino) return 'replaced';
  try {
    unlinkSync(path);
    return 'removed';
  } catch {
    return 'gone';
  }
}
