/**
 * The overall status: healthy, degraded or down, from the alert state and data freshness.
 *
 * - down: the backend cannot be reached, or no data arrived for `DOWN_AFTER_S`;
 * - degraded: an alert is firing (warning or critical), or data is late (`STALE_AFTER_S`);
 * - healthy: fresh data and nothing firing.
 */

import { isNum, duration } from "./format.js";

export const STALE_AFTER_S = 30; // six export intervals of 5 s
export const DOWN_AFTER_S = 120;

/**
 * @param {{reachable: boolean, lastIngestAge: number|null, firing: Array<{severity?: string}>}} input
 * @returns {{status: "healthy"|"degraded"|"down"|"unknown", label: string, reason: string}}
 */
export function deriveStatus({ reachable, lastIngestAge, firing }) {
  if (!reachable) return { status: "down", label: "Down", reason: "backend unreachable" };
  if (!isNum(lastIngestAge)) return { status: "down", label: "No data", reason: "nothing received yet" };
  if (lastIngestAge > DOWN_AFTER_S) {
    return { status: "down", label: "Down", reason: `no data for ${duration(lastIngestAge)}` };
  }
  const serious = firing.filter((a) => (a.severity || "warning") !== "info");
  if (serious.length) {
    const crit = serious.filter((a) => a.severity === "critical").length;
    const n = serious.length;
    return {
      status: "degraded",
      label: "Degraded",
      reason: `${n} alert${n > 1 ? "s" : ""} firing${crit ? ` (${crit} critical)` : ""}`,
    };
  }
  if (lastIngestAge > STALE_AFTER_S) {
    return { status: "degraded", label: "Degraded", reason: `data late by ${duration(lastIngestAge)}` };
  }
  const info = firing.length ? ` · ${firing.length} info alert${firing.length > 1 ? "s" : ""}` : "";
  return { status: "healthy", label: "Healthy", reason: `data ${duration(lastIngestAge)} old${info}` };
}
