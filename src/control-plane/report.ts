/**
 * What a translation found wrong with one object, and the status conditions Istio would set on it. Translations
 * take a `Report` and keep going: a problem skips only the part that is wrong.
 */

export interface Condition {
  /** e.g. `istio.io/WaypointBound`, `ZtunnelAccepted`. */
  readonly type: string;
  readonly status: 'True' | 'False';
  readonly reason: string;
  readonly message: string;
}

export interface ObjectReport {
  readonly problems: readonly string[];
  readonly conditions: readonly Condition[];
}

export class Report {
  readonly problems: string[] = [];
  readonly conditions: Condition[] = [];
  /** Waypoint keys (`ns/name`) this translation looked up, found or not: a change to one recomputes it. */
  readonly waypoints = new Set<string>();

  problem(path: string, message: string): void {
    this.problems.push(`${path}: ${message}`);
  }

  condition(type: string, status: 'True' | 'False', reason: string, message: string): void {
    const existing = this.conditions.findIndex((c) => c.type === type);
    const c = { type, status, reason, message };
    if (existing >= 0) this.conditions[existing] = c;
    else this.conditions.push(c);
  }

  snapshot(): ObjectReport {
    return { problems: [...this.problems], conditions: [...this.conditions] };
  }
}
