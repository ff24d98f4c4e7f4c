// The range switch of a panel's charts: 15 min, 1 h, 24 h or 7 d, as a row of real buttons
// (the pressed one says aria-pressed="true"). The choice is remembered in this browser, per
// panel, as the theme is.

export const RANGES = [
  { key: "15m", label: "15 min", words: "15 minutes", ms: 15 * 60_000 },
  { key: "1h", label: "1 h", words: "hour", ms: 3600_000 },
  { key: "24h", label: "24 h", words: "24 hours", ms: 24 * 3600_000 },
  { key: "7d", label: "7 d", words: "7 days", ms: 7 * 24 * 3600_000 },
];
const DEFAULT = "1h";

/** Fills `group` (an element with an aria-label) with the buttons; `onChange(range)` on a new
 * choice. `storageKey`: where the choice is kept. */
export function createRangeSwitch(group, { storageKey, onChange = () => {} }) {
  let current = RANGES.find((range) => range.key === stored(storageKey)) ?? byKey(DEFAULT);
  group.setAttribute("role", "group");
  group.classList.add("range-switch");
  const buttons = RANGES.map((range) => {
    const button = Object.assign(document.createElement("button"), {
      type: "button",
      textContent: range.label,
    });
    button.dataset.range = range.key;
    button.title = `Last ${range.words}`;
    button.addEventListener("click", () => choose(range));
    return button;
  });
  group.replaceChildren(...buttons);
  showPressed();

  function choose(range) {
    if (range.key === current.key) return;
    current = range;
    try {
      localStorage.setItem(storageKey, range.key);
    } catch {
      // storage off: the choice lasts for this page only
    }
    showPressed();
    onChange(range);
  }

  function showPressed() {
    for (const button of buttons) {
      button.setAttribute("aria-pressed", String(button.dataset.range === current.key));
    }
    group.dataset.range = current.key;
  }

  return {
    get range() {
      return current;
    },
  };
}

function byKey(key) {
  return RANGES.find((range) => range.key === key);
}

function stored(key) {
  try {
    return localStorage.getItem(key);
  } catch {
    return null;
  }
}
