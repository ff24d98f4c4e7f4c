// Toasts, bottom-right: at most three at once (the oldest leaves first), each gone after its
// lifetime or when its X is pressed. Session and alert toasts share the region and the cap. The
// region is a polite live region, so screen readers announce each one without interrupting.

import { clock } from "./format.js";
import { icons } from "./icons.js";

const MAX_VISIBLE = 3;
const ALERT_LIFETIME_MS = 10_000; // an alert needs reading; a session change is a glance

export function createToasts(region, { lifetimeMs = 5000 } = {}) {
  const timers = new WeakMap();

  function dismiss(toast) {
    clearTimeout(timers.get(toast));
    toast.remove();
  }

  function show({ kind, icon, title, detail, lifetimeMs: lifetime = lifetimeMs }) {
    while (region.children.length >= MAX_VISIBLE) dismiss(region.firstElementChild);
    const toast = document.createElement("div");
    toast.className = "toast";
    toast.dataset.testid = "toast";
    toast.dataset.kind = kind;
    toast.innerHTML =
      `${icon}<div class="text"><strong></strong><small></small></div>` +
      `<button type="button" data-testid="toast-dismiss" aria-label="Dismiss notification">` +
      `${icons.close}</button>`;
    toast.querySelector("strong").textContent = title;
    toast.querySelector("small").textContent = detail;
    toast.querySelector("button").addEventListener("click", () => dismiss(toast));
    region.append(toast);
    timers.set(toast, setTimeout(() => dismiss(toast), lifetime));
    return toast;
  }

  return { show };
}

/** The original dashboard's wording: "N session(s) created" and "Total: X"; a pushed change
 * also names its node. */
export function sessionToast(event) {
  const { current_count: total, delta, node_id: node } = event.data;
  const created = event.event_type === "session_created";
  const noun = delta === 1 ? "session" : "sessions";
  return {
    kind: created ? "created" : "destroyed",
    icon: created ? icons.userPlus : icons.userMinus,
    title: `${delta} ${noun} ${created ? "created" : "destroyed"}`,
    detail: node ? `Total: ${total} · on ${node}` : `Total: ${total}`,
  };
}

/** A newly firing alert: its message, then severity, subject and when it started. */
export function alertToast(alert) {
  const severity = alert.severity[0].toUpperCase() + alert.severity.slice(1);
  const subject = alert.subject ? ` · ${alert.subject}` : "";
  return {
    kind: `alert-${alert.severity}`,
    icon: alert.severity === "info" ? icons.info : icons.warning,
    title: alert.message,
    detail: `${severity}${subject} · since ${clock(alert.started_at)}`,
    lifetimeMs: ALERT_LIFETIME_MS,
  };
}
