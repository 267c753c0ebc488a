/**
 * Sets `key` as the newest entry of `map` and drops the oldest past `cap`:
 * memory kept per key or per path that a hostile writer, cycling through
 * new names, cannot grow without end.
 */
export function setBounded<K, V>(map: Map<K, V>, key: K, value: V, cap: number): void {
  map.delete(key);
  map.set(key, value);
  if (map.size > cap) {
    const oldest = map.keys().next();
    if (!oldest.done) map.delete(oldest.value);
  }
}
