/** Keys grouped by the conf file they belong to, so a pass touches one file's keys without scanning them all. */
export class KeyIndex {
  private readonly byFile = new Map<string, Set<string>>();

  add(file: string, key: string): void {
    let keys = this.byFile.get(file);
    if (keys === undefined) {
      keys = new Set();
      this.byFile.set(file, keys);
    }
    keys.add(key);
  }

  delete(file: string, key: string): void {
    const keys = this.byFile.get(file);
    if (keys === undefined) return;
    keys.delete(key);
    if (keys.size === 0) this.byFile.delete(file);
  }

  keysOf(file: string): ReadonlySet<string> {
    return this.byFile.get(file) ?? new Set();
  }

  files(): IterableIterator<string> {
    return this.byFile.keys();
  }

  clear(): void {
    this.byFile.clear();
  }
}
