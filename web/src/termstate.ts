// Which terminal output bytes the page has shown, by absolute offset (the
// target numbers every byte a terminal ever wrote). Re-attaching asks for
// the bytes from `resumeFrom()`; anything that arrives twice is dropped.

export class TerminalOffsets {
  /** Offset just past the last byte shown; null before the first byte. */
  private next: number | null = null;

  /** Where to resume after a dropped connection (null: all that is retained). */
  resumeFrom(): number | null {
    return this.next;
  }

  /**
   * A chunk of `len` bytes at `offset` arrived: how many of its *last*
   * bytes are new. A gap (bytes the target no longer kept) is accepted.
   */
  accept(offset: number, len: number): number {
    const end = offset + len;
    if (this.next === null || offset >= this.next) {
      this.next = end;
      return len;
    }
    if (end <= this.next) return 0;
    const fresh = end - this.next;
    this.next = end;
    return fresh;
  }
}
