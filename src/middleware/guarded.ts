import { Observable, type Observer, Subscriber, type Subscription } from 'rxjs';

type Report = (error: unknown, callback: 'next' | 'error' | 'complete') => void;

/**
 * An Observable whose end subscribers cannot crash the process: RxJS rethrows
 * an exception from an observer's callback asynchronously, which kills a Node
 * process. Here it is reported (logged) and the stream goes on, for that
 * subscriber and every other. A stream error with no error callback is
 * reported the same way instead of being thrown.
 *
 * Operator chains (`pipe`) subscribe with a `Subscriber`, which is passed
 * through untouched so their teardown stays linked; guard the end of a chain
 * yourself, or set RxJS's `config.onUnhandledError`.
 */
export class GuardedObservable<T> extends Observable<T> {
  constructor(
    private readonly inner: Observable<T>,
    private readonly report: Report,
  ) {
    super();
  }

  override subscribe(
    observerOrNext?: Partial<Observer<T>> | ((value: T) => void) | null,
    error?: ((error: unknown) => void) | null,
    complete?: (() => void) | null,
  ): Subscription {
    if (observerOrNext instanceof Subscriber) return this.inner.subscribe(observerOrNext);
    const observer: Partial<Observer<T>> =
      typeof observerOrNext === 'function' || observerOrNext == null
        ? { next: observerOrNext ?? undefined, error: error ?? undefined, complete: complete ?? undefined }
        : observerOrNext;
    const guard = (callback: 'next' | 'error' | 'complete', run: () => void): void => {
      try {
        run();
      } catch (thrown) {
        this.report(thrown, callback);
      }
    };
    return this.inner.subscribe({
      next: (value) => guard('next', () => observer.next?.(value)),
      error: (err: unknown) =>
        guard('error', () => (observer.error ? observer.error(err) : this.report(err, 'error'))),
      complete: () => guard('complete', () => observer.complete?.()),
    });
  }
}
