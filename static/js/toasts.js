// Toasts, bottom-right: at most three at once (the oldest leaves first), each gone after its
// lifetime or when its X is pressed. The region is a polite live region, so screen readers
// announce each one without interrupting.

import { icons } from "./icons.js";

const MAX_VISIBLE = 3;

export function createToasts(region, { lifetimeMs = 5000 } = {}) {
  const timers = new WeakMap();

  function dismiss(toast) {
    clearTimeout(timers.get(toast));
    toast.remove();
  }

  function show({ kind, icon, title, detail }) {
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
    timers.set(toast, setTimeout(() => dismiss(toast), lifetimeMs));
    return toast;
  }

  return { show };
}

/** The original dashboard's wording: "N session(s) created" and "Total: X". */
export function sessionToast(event) {
  const { current_count: total, delta } = event.data;
  const created = event.event_type === "session_created";
  const noun = delta === 1 ? "session" : "sessions";
  return {
    kind: created ? "created" : "destroyed",
    icon: created ? icons.userPlus : icons.userMinus,
    title: `${delta} ${noun} ${created ? "created" : "destroyed"}`,
    detail: `Total: ${total}`,
  };
}
