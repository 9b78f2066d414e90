/**
 * The outside programs tests run, and the Debian package of each (what .ci/run installs). A test
 * that needs one says which is missing and how to install it, in its skip reason or its failure.
 */
import { accessSync, constants } from 'node:fs';
import { join } from 'node:path';

const packages = {
  socat: 'socat',
  shellcheck: 'shellcheck',
  man: 'man-db',
  openssl: 'openssl',
  unshare: 'util-linux',
  setpriv: 'util-linux',
  mount: 'mount',
  useradd: 'passwd',
  'voms-proxy-fake': 'voms-clients',
} as const;
export type Tool = keyof typeof packages;

/** Searched like a root shell would: the PATH, then the sbin directories. */
function onPath(tool: string): boolean {
  const directories = [...(process.env.PATH ?? '').split(':'), '/usr/local/sbin', '/usr/sbin', '/sbin'];
  return directories.some((directory) => {
    try {
      accessSync(join(directory || '.', tool), constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

/** For `{ skip }`: false when every tool is there, else which one is missing and how to install it. */
export function missingTool(...tools: Tool[]): string | false {
  const missing = tools.find((tool) => !onPath(tool));
  return missing === undefined ? false : `${missing} is not installed: apt-get install ${packages[missing]}`;
}

/** Throws, saying which tool is missing and how to install it, unless every tool is there. */
export function requireTools(...tools: Tool[]): void {
  const missing = missingTool(...tools);
  if (missing !== false) throw new Error(missing);
}
