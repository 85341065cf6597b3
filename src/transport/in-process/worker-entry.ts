/**
 * Where the device worker's code is: compiled .js in dist/. Under tsx (tests run from source) a
 * worker gets the .ts file through tsx's `tsImport`, because on Node 20 `execArgv: ['--import',
 * 'tsx']` does not apply tsx's ESM hooks to a worker's entry module ("Unknown file extension .ts").
 * Used by the transport (thread 0) and by thread 0 itself (the other device threads).
 */
export function deviceWorkerEntry(): { entry: string | URL; eval: boolean } {
  // Under tsImport a module's URL carries a query (?tsx-namespace=...): look at the path only.
  const here = new URL(import.meta.url);
  here.search = '';
  here.hash = '';
  const fromSource = here.pathname.endsWith('.ts');
  const url = new URL('./device-worker' + (fromSource ? '.ts' : '.js'), here);
  if (!fromSource) return { entry: url, eval: false };
  const api = import.meta.resolve('tsx/esm/api');
  const code = `import(${JSON.stringify(api)}).then((m) => m.tsImport(${JSON.stringify(url.href)}, ${JSON.stringify(here.href)}))`;
  return { entry: code, eval: true };
}
