// Light and dark: follow the OS until the toggle is used, then remember the choice.

import { icons } from "./icons.js";

const KEY = "sse-monitor.theme";
const dark = matchMedia("(prefers-color-scheme: dark)");

function stored() {
  try {
    return localStorage.getItem(KEY);
  } catch {
    return null;
  }
}

function apply(theme, button) {
  document.documentElement.dataset.theme = theme;
  const next = theme === "dark" ? "light" : "dark";
  button.innerHTML = theme === "dark" ? icons.sun : icons.moon;
  button.setAttribute("aria-label", `Switch to ${next} theme`);
  button.title = `Switch to ${next} theme`;
}

export function setUpTheme(button) {
  const current = () => stored() || (dark.matches ? "dark" : "light");
  apply(current(), button);
  dark.addEventListener("change", () => apply(current(), button));
  button.addEventListener("click", () => {
    const theme = document.documentElement.dataset.theme === "dark" ? "light" : "dark";
    try {
      localStorage.setItem(KEY, theme);
    } catch {
      // private mode: the choice lasts for this page only
    }
    apply(theme, button);
  });
}
