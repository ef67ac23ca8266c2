// POSIX path helpers for the target's paths (always absolute, '/'-separated).

export function basename(p: string): string {
  const t = p.length > 1 ? p.replace(/\/+$/, '') : p;
  const i = t.lastIndexOf('/');
  return i < 0 ? t : t.slice(i + 1);
}

export function dirname(p: string): string {
  const t = p.length > 1 ? p.replace(/\/+$/, '') : p;
  const i = t.lastIndexOf('/');
  if (i < 0) return '.';
  if (i === 0) return '/';
  return t.slice(0, i);
}

export function join(dir: string, name: string): string {
  if (name.startsWith('/')) return name;
  return dir.endsWith('/') ? dir + name : `${dir}/${name}`;
}

/** `p` is `dir` or inside it. */
export function isUnder(p: string, dir: string): boolean {
  if (dir === '/') return p.startsWith('/');
  return p === dir || p.startsWith(dir.endsWith('/') ? dir : `${dir}/`);
}

/** `p` relative to `root` when inside it, else `p`. */
export function relative(p: string, root: string): string {
  if (p === root) return '.';
  if (isUnder(p, root)) return p.slice(root.endsWith('/') ? root.length : root.length + 1);
  return p;
}

/** A name the user typed for a new entry: one path component, not . or .. */
export function validName(name: string): string | null {
  const n = name.trim();
  if (!n) return 'a name is needed';
  if (n === '.' || n === '..') return `"${n}" is not a file name`;
  if (n.includes('/')) return 'a name cannot contain "/"';
  if (n.includes('\0')) return 'a name cannot contain NUL';
  return null;
}
